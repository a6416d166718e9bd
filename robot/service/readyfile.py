"""Readiness for init systems without sd_notify (the Duo's BusyBox init).

`S99storybot start` must not say "started" for a robot that then refuses its config or
dies loading the model, and the log cannot tell it (with log_level = "warning" the
"ready" line is never written). So the script names a file in $STORYBOT_READY_FILE and
the robot writes its pid there each time it is ready, the same moments it sends
READY=1 to systemd; the script waits until the file names a live process, or until the
robot has given up."""
import os

ENV = "STORYBOT_READY_FILE"


def mark(path: str) -> bool:
    """Writes this process's pid to `path` atomically (a reader never sees half a
    number); True if it did. A read-only or missing folder must not stop the robot."""
    if not path:
        return False
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False
    return True
