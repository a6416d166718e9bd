"""Push-to-talk triggers: what starts and ends a recording for robot/speech/listen.py.

    t = make_trigger(cfg["speech_in"])    # "enter", "gpio" or "signal"
    t.wait_press(timeout=None)            # True at a press; False when closed / timed out
    t.released()                          # polled while recording: True once let go
    t.close()                             # from any thread; a waiting wait_press returns False

ManualTrigger is pressed by calls (press/release/toggle), so a control command or a test
can work it; EnterTrigger and SignalTrigger are ManualTriggers fed by standard input and
SIGUSR1. GpioTrigger watches a button on a Linux GPIO line: through libgpiod's `gpiod`
module (v2 API, the GPIO character device) when it is installed, else /sys/class/gpio,
which is what a Milk-V Duo's buildroot image has.
"""
import os
import signal
import sys
import threading
import time
from typing import IO, Any, Mapping, Optional, Union

from robot.errors import StorybotError


class ManualTrigger:
    """Pressed and released by calls (a control command, a test); the base of the others.
    A press is remembered until a listen() takes it; `closed` means no press will come."""

    name = "manual"

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending = False
        self._held = False
        self.closed = False

    def press(self) -> None:
        with self._cond:
            if not self.closed:
                self._pending = self._held = True
                self._cond.notify_all()

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def toggle(self) -> None:
        with self._cond:
            if self._held:
                self.release()
            else:
                self.press()

    def wait_press(self, timeout: Optional[float] = None) -> bool:
        """True at a press; False when closed or after `timeout` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: self._pending or self.closed, timeout)
            if self._pending:
                self._pending = False
                return True
            return False

    def released(self) -> bool:
        return not self._held

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._pending = self._held = False
            self._cond.notify_all()


class EnterTrigger(ManualTrigger):
    """Each line on the stream (Enter) toggles: the first starts a recording, the next
    one ends it early. The end of the stream means no more presses, but a press already
    made still records until the speaker stops talking (`echo | storybot listen`). The
    stream is read by a thread of its own, so a daemon that also reads prompts from
    standard input should not use this trigger."""

    name = "enter"

    def __init__(self, stream: Optional[IO[str]] = None) -> None:
        super().__init__()
        self.stream = sys.stdin if stream is None else stream
        threading.Thread(target=self._read, name="enter-trigger", daemon=True).start()

    def _read(self) -> None:
        try:
            for _ in self.stream:
                self.toggle()
        except (OSError, ValueError):
            pass
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class SignalTrigger(ManualTrigger):
    """SIGUSR1 toggles: `kill -USR1 PID` once to start talking, once more to stop early
    (trailing silence ends the recording too)."""

    name = "signal"

    def __init__(self, signum: int = signal.SIGUSR1) -> None:
        super().__init__()
        self.signum = signum
        try:
            self._old = signal.signal(signum, lambda *_: self.toggle())
        except ValueError:
            raise StorybotError('trigger = "signal" must be set up by the main thread; '
                                'create the listener there or use another trigger') from None

    def close(self) -> None:
        super().close()
        try:
            signal.signal(self.signum, self._old if self._old is not None else signal.SIG_DFL)
        except (ValueError, TypeError):
            pass


class _GpiodLine:
    """A button line through libgpiod v2 (the GPIO character device): the kernel reports
    edges and debounces, so waiting costs nothing."""

    def __init__(self, chip: str, line: int, active_low: bool) -> None:
        import datetime

        import gpiod
        from gpiod.line import Direction, Edge, Value

        self._active = Value.ACTIVE
        self.line = line
        settings = gpiod.LineSettings(direction=Direction.INPUT, edge_detection=Edge.BOTH, active_low=active_low,
                                      debounce_period=datetime.timedelta(milliseconds=10))
        self.req = gpiod.request_lines(chip, consumer="storybot", config={line: settings})
        self.how = "libgpiod"

    def active(self) -> bool:
        return bool(self.req.get_value(self.line) == self._active)

    def wait(self, seconds: float) -> None:
        if self.req.wait_edge_events(seconds):
            self.req.read_edge_events()

    def close(self) -> None:
        self.req.release()


class _SysfsLine:
    """The same button through the older /sys/class/gpio interface (what a Duo's buildroot
    image has when no gpiod module is built). Waits for an edge interrupt where the line
    supports one, else reads the value every 20 ms."""

    def __init__(self, chip: str, line: int, active_low: bool, root: str) -> None:
        base = _sysfs_base(chip, root)
        number = base + line
        d = os.path.join(root, f"gpio{number}")
        if not os.path.isdir(d):
            _write(os.path.join(root, "export"), str(number))
        _write(os.path.join(d, "direction"), "in", missing_ok=True)
        self.edges = _write(os.path.join(d, "edge"), "both", missing_ok=True)
        self.fd = os.open(os.path.join(d, "value"), os.O_RDONLY)
        self.active_low = active_low
        self.how = f"sysfs gpio{number}"

    def active(self) -> bool:
        os.lseek(self.fd, 0, os.SEEK_SET)
        high = os.read(self.fd, 8).strip() == b"1"
        return high != self.active_low

    def wait(self, seconds: float) -> None:
        if self.edges:
            import select
            p = select.poll()
            p.register(self.fd, select.POLLPRI | select.POLLERR)
            p.poll(seconds * 1000)
        else:
            time.sleep(min(seconds, 0.02))

    def close(self) -> None:
        os.close(self.fd)


def _write(path: str, text: str, missing_ok: bool = False) -> bool:
    """Writes a sysfs attribute; False when it does not exist and that is allowed."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        if missing_ok:
            return False
        raise
    try:
        os.write(fd, text.encode())
    except OSError as e:
        if e.errno != 16:  # EBUSY: already exported
            raise
    finally:
        os.close(fd)
    return True


def _sysfs_base(chip: str, root: str) -> int:
    name = os.path.basename(chip)
    try:
        entries = sorted(e for e in os.listdir(root) if e.startswith("gpiochip"))
    except OSError:
        entries = []
    for e in entries:
        if os.path.basename(os.path.realpath(os.path.join(root, e, "device"))) == name:
            with open(os.path.join(root, e, "base")) as f:
                return int(f.read().strip())
    raise StorybotError(f"GPIO chip {name} is not in {root}; set [speech_in] gpio_chip to a /dev/gpiochipN "
                        f"that exists, or use trigger = \"enter\"")


class GpioTrigger:
    """A push button: pressed while the line is active (active-low by default: the
    button pulls the pin to ground). A recording that ends while the button is still
    held does not start another one until it is let go."""

    name = "gpio"

    def __init__(self, chip: str, line: int, active_low: bool = True, sysfs_root: str = "/sys/class/gpio") -> None:
        self.closed = False
        self._armed = True
        self._users = 0          # threads inside wait_press(); the last one out closes the line
        self._guard = threading.Lock()
        where = f"GPIO line {line} of {chip}"
        self._line: Optional[Union[_GpiodLine, _SysfsLine]] = None
        try:
            if os.path.exists(chip) and _have_gpiod():
                self._line = _GpiodLine(chip, line, active_low)
            elif os.path.isdir(sysfs_root):
                self._line = _SysfsLine(chip, line, active_low, sysfs_root)
            elif not os.path.exists(chip):
                raise StorybotError(f"there is no GPIO chip {chip}; set [speech_in] gpio_chip to one that exists "
                                    f"(ls /dev/gpiochip*) or use trigger = \"enter\"")
            else:
                raise StorybotError(f"{where} needs the gpiod module (pip install gpiod) or /sys/class/gpio; "
                                    f"install one or use trigger = \"enter\"")
        except OSError as e:
            raise StorybotError(f"cannot watch {where} ({e.strerror or e}); check [speech_in] gpio_chip and "
                                f"gpio_line (gpioinfo lists the lines) and that storybot may open the chip") from None
        self.how = self._line.how

    def wait_press(self, timeout: Optional[float] = None) -> bool:
        with self._guard:
            if self.closed:
                return False
            self._users += 1
        try:
            return self._wait(timeout)
        finally:
            with self._guard:
                self._users -= 1
                if self.closed and not self._users:
                    self._release_line()

    def _wait(self, timeout: Optional[float]) -> bool:
        end = None if timeout is None else time.monotonic() + timeout
        while not self.closed:
            line = self._line
            if line is None:
                break
            if line.active():
                if self._armed:
                    self._armed = False
                    return True
            else:
                self._armed = True
            left = 0.5 if end is None else min(0.5, end - time.monotonic())
            if left <= 0:
                return False
            line.wait(left)
        return False

    def released(self) -> bool:
        with self._guard:
            if self.closed or self._line is None:
                return True
            if self._line.active():
                return False
        self._armed = True
        return True

    def press(self) -> None:
        raise StorybotError("a GPIO trigger is pressed with its button; use trigger = \"signal\" for a control command")

    release = press

    def close(self) -> None:
        """Takes effect within half a second in a thread waiting for a press."""
        with self._guard:
            self.closed = True
            if not self._users:
                self._release_line()

    def _release_line(self) -> None:
        line, self._line = self._line, None
        if line is not None:
            line.close()


def _have_gpiod() -> bool:
    try:
        import gpiod  # noqa: F401
        return hasattr(gpiod, "request_lines")  # v2 API; the 1.x module is different
    except ImportError:
        return False


def make_trigger(settings: Mapping[str, Any]) -> Union[ManualTrigger, "GpioTrigger"]:
    kind = settings["trigger"]
    if kind == "enter":
        return EnterTrigger()
    if kind == "signal":
        return SignalTrigger()
    if kind == "gpio":
        return GpioTrigger(settings["gpio_chip"], settings["gpio_line"], settings["gpio_active_low"])
    raise StorybotError(f"[speech_in] trigger {kind!r} is unknown; use \"enter\", \"gpio\" or \"signal\"")
