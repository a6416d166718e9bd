"""SIGHUP: read the configuration again and apply what can change while running.

The new files are read and checked completely before anything is applied, so a bad
edit leaves the running configuration in place (and says why). The log level, story
settings, queue policy, socket permissions and the voice apply at once; the model,
the microphone, the socket path, stdin and turning speech on or off wait for a restart."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Tuple

from robot import config, story
from robot.errors import StorybotError
from robot.service import control, logs
from robot.service.jobs import QueuePolicy

if TYPE_CHECKING:
    from robot.service.daemon import Robot

Change = Tuple[str, str, Any]
_AT_RESTART = (("daemon", "socket"), ("daemon", "stdin"), ("speech_out", "enabled"))


def changes(old: Dict[str, Dict[str, Any]], new: Dict[str, Dict[str, Any]]) -> List[Change]:
    return [(s, k, v) for s in new for k, v in new[s].items() if old[s][k] != v]


def needs_restart(found: List[Change]) -> List[str]:
    return [f"[{s}] {k}" for s, k, _ in found if s in ("model", "speech_in") or (s, k) in _AT_RESTART]


def reload(robot: Robot) -> bool:
    """Applies the configuration files again; False (logged) when they were refused."""
    robot.notifier.reloading()
    log = robot.log
    log.info("reloading the configuration (SIGHUP)")
    try:
        cfg, files = config.load(robot.options.config_path)
        d = cfg["daemon"]
        gid = control.group_id(d["socket_group"]) if robot.server else None
    except StorybotError as e:
        log.error("configuration NOT reloaded, the running one stays: %s", e)
        robot.notifier.ready(robot.status_line())
        return False
    found = changes(robot.cfg, cfg)
    try:
        if robot.speaker is not None and any(s == "speech_out" for s, _, _ in found):
            # --voice / --tts on the command line keep winning over the file
            robot.speaker.reconfigure(dict(cfg, speech_out=story.speech_settings(robot.options.speech, cfg)))
        if robot.server is not None and gid is not None:
            robot.server.apply(int(d["socket_mode"], 8), gid)
    except StorybotError as e:
        log.error("configuration NOT fully reloaded: %s", e)
        robot.notifier.ready(robot.status_line())
        return False
    logs.configure(robot.options.log_level or d["log_level"], d["log_story_text"])
    with robot.queue.cond:
        robot.cfg, robot.files = cfg, files
        robot.queue.policy = QueuePolicy.from_config(cfg)
    robot.reloads += 1
    applied = "; ".join(f"[{s}] {k} = {v!r}" for s, k, v in found) or "no changes"
    log.info("configuration reloaded from %s: %s", ", ".join(files) or "built-in defaults", applied)
    later = needs_restart(found)
    if later:
        log.warning("%s: takes effect when the robot restarts", ", ".join(later))
    robot.notifier.ready(robot.status_line())
    return True
