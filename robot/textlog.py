"""Whether the words of prompts and stories may be logged ([daemon] log_story_text).

A child's words are private: they reach a log only when the configuration says so. This
one flag lives below every room, so the speech room (which hears the words) asks it
without importing the service room that sets it (robot/service/logs.py)."""
import logging

_enabled = False


def configure(enabled: bool) -> None:
    global _enabled
    _enabled = bool(enabled)


def enabled() -> bool:
    return _enabled


def story_text(log: logging.Logger, what: str, text: str) -> None:
    """Logs the words of a prompt or a story only when the configuration allows it."""
    if _enabled:
        log.info("%s: %s", what, text.replace("\n", " ").strip())
