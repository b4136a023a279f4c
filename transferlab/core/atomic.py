"""Outputs appear whole or not at all: write next to the target, then rename over it."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


def _temp_sibling(target: Path, kind: str) -> Path:
    return target.with_name(f".{target.name}.{kind}-{os.getpid()}")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (the OS may have reused the id)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def remove_stale_temps(target: Path) -> list[Path]:
    """Delete what a killed writer (kill -9, power loss) left beside `target`: temp folders and files of
    processes that no longer exist. A live writer's are kept. Returns what was removed."""
    removed = []
    for kind in ("tmp", "old"):
        for debris in target.parent.glob(f".{target.name}.{kind}-*"):
            pid = debris.name.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
                shutil.rmtree(debris) if debris.is_dir() else debris.unlink()
                removed.append(debris)
    return removed


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces `target`, on error it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    temp = _temp_sibling(target, "tmp")
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir()
    try:
        yield temp
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    old = _temp_sibling(target, "old")
    if target.exists():
        target.rename(old)
    temp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    temp = _temp_sibling(path, "tmp")
    temp.write_bytes(data)
    os.replace(temp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
