"""What a path is when it is not a regular file: a FIFO, a device or a socket is never opened as an image
(reading a FIFO waits for a writer forever; /dev/zero never ends)."""

from __future__ import annotations

import stat
from pathlib import Path

KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
         (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def special_kind(path: Path) -> str | None:
    """The kind of a special file at `path`, links followed (stat never opens it); None for a regular file, a
    folder or nothing at all."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    return next((name for test, name in KINDS if test(mode)), None)


def not_opened(kind: str) -> str:
    """The left-out reason for a special file."""
    return f"{kind}, not an image file; not opened"
