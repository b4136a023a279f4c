"""Every entry point runs in Python's UTF-8 mode: class and file names are UTF-8 whatever the locale. Under
`LC_ALL=C PYTHONUTF8=0` (or a Latin-9 locale) Python decodes file names with ASCII (or ISO-8859-9), so `café/`
became `caf\\udcc3\\udca9` (or `cafÃ©`): every image was left out as not UTF-8, or the class renamed."""

from __future__ import annotations

import os
import sys

REEXEC_MARK = "TRANSFERLAB_UTF8_REEXEC"  # one re-exec at most, whatever happens


def needs_utf8_mode() -> bool:
    return sys.getfilesystemencoding().lower().replace("-", "") != "utf8" and not os.environ.get(REEXEC_MARK)


def ensure_utf8_mode() -> None:
    """Start this process again with `-X utf8` when its file system encoding is not UTF-8 (before any work)."""
    if needs_utf8_mode():
        os.environ[REEXEC_MARK] = "1"
        os.execv(sys.executable, [sys.executable, "-X", "utf8", *sys.orig_argv[1:]])
