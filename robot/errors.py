"""The one exception type users see: a single plain sentence naming the problem and
the fix. The CLI prints it and exits 2; nothing else ever reaches a user as a traceback."""


class StorybotError(Exception):
    """A problem the user can fix; str(e) is the whole message."""

    exit_code = 2
