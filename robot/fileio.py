"""Opening the files a user names without trusting what they are.

A path on the command line or in the config can name anything: a FIFO (open() then
waits forever for a writer, and a daemon stuck there ignores SIGTERM), a device such as
/dev/zero (a read never ends), a directory, or a regular file far larger than any
config. Every path the robot reads from a user goes through check_regular_file() before
C or Python opens it, and small text files are read with read_small_file(), which opens
without blocking and reads at most `limit` bytes."""
import os
import stat

from robot.errors import StorybotError

CONFIG_LIMIT = 1 << 20  # a config with every key commented is 10 KB; 1 MiB is a mistake, not a config


def _kind(mode: int) -> str:
    """What a non-regular file is, in words a user recognises."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO), which could block forever"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _refuse(path: str, what: str, e: OSError) -> StorybotError:
    if isinstance(e, FileNotFoundError):
        return StorybotError(f"{what} {path} does not exist; check the path")
    if isinstance(e, PermissionError):
        return StorybotError(f"{what} {path} cannot be read (permission denied)")
    return StorybotError(f"{what} {path} cannot be read: {e.strerror or e}")


def check_mode(path: str, what: str, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise StorybotError(f"{what} {path} is {_kind(mode)}; give the path of a regular file")


def check_regular_file(path: "str | os.PathLike[str]", what: str) -> os.stat_result:
    """Raises StorybotError unless `path` is a regular file (after symlinks); `what`
    names it in the message ("model file", "config file")."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        if isinstance(e, ValueError):
            raise StorybotError(f"{what} {path!r} is not a usable path (it contains a NUL byte)") from None
        raise _refuse(path, what, e) from None
    check_mode(path, what, st.st_mode)
    return st


def read_small_file(path: "str | os.PathLike[str]", what: str, limit: int = CONFIG_LIMIT) -> bytes:
    """The bytes of a regular file of at most `limit` bytes. The open cannot block (a
    FIFO swapped in after a stat is caught by fstat on the open descriptor) and the read
    stops at limit + 1 bytes whatever the file claims to be."""
    path = os.fspath(path)
    check_regular_file(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise _refuse(path, what, e) from None
    try:
        check_mode(path, what, os.fstat(fd).st_mode)
        chunks: "list[bytes]" = []
        size = 0
        while size <= limit:
            data = os.read(fd, min(1 << 16, limit + 1 - size))
            if not data:
                break
            chunks.append(data)
            size += len(data)
    except OSError as e:
        raise _refuse(path, what, e) from None
    finally:
        os.close(fd)
    if size > limit:
        raise StorybotError(f"{what} {path} is larger than {_size(limit)}; that is not a {what} (check the path)")
    return b"".join(chunks)


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and not n % (1 << 20) else f"{n} bytes"
