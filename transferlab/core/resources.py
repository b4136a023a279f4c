"""How many worker processes this machine can hold: a worker-count setting is lowered to its cores and free memory."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("transferlab.resources")

GB = 1e9
# cgroup v2 (one hierarchy) and v1 (a memory controller of its own): (limit, usage) file names under the folder
CGROUP_FILES = {"": ("memory.max", "memory.current"), "memory": ("memory.limit_in_bytes", "memory.usage_in_bytes")}


def usable_cores() -> int:
    """The cores this process may run on: its affinity mask (a container's cpuset, `taskset`), else the machine's."""
    if hasattr(os, "sched_getaffinity"):  # not on macOS
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def available_memory(proc: Path = Path("/proc"), cgroups: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes a new process can still use: the kernel's MemAvailable, or less when this process's cgroup has a
    memory limit closer (a container, a systemd slice); None where neither can be read (not Linux)."""
    return min(_mem_available(proc) + _cgroup_headroom(proc, cgroups), default=None)


def _mem_available(proc: Path) -> list[int]:
    try:
        meminfo = (proc / "meminfo").read_text(encoding="ascii")
    except OSError:  # no /proc: the cgroup, if any, decides
        return []
    return [int(line.split()[1]) * 1024 for line in meminfo.splitlines() if line.startswith("MemAvailable:")]


def _cgroup_headroom(proc: Path, cgroups: Path) -> list[int]:
    """Limit minus usage of this process's memory cgroup (v2 or v1), where it has a limit."""
    try:
        lines = (proc / "self" / "cgroup").read_text(encoding="ascii").splitlines()
    except OSError:
        return []
    own = {controllers: path.lstrip("/") for _, controllers, path in (line.split(":", 2) for line in lines)}
    headroom = []
    for controller, (limit_name, usage_name) in CGROUP_FILES.items():
        if controller not in own:
            continue
        folder = cgroups / controller / own[controller]
        if not (folder / limit_name).is_file():  # a cgroup namespace: the mount is already this process's cgroup
            folder = cgroups / controller
        try:
            limit, usage = ((folder / name).read_text(encoding="ascii").strip() for name in (limit_name, usage_name))
        except OSError:
            continue
        if limit.isdigit() and int(limit) < 2**62:  # v2 says "max", v1 a huge number, for no limit
            headroom.append(max(0, int(limit) - int(usage)))
    return headroom


def capped_workers(asked: int, key: str, per_worker_bytes: float, cores: int | None = None,
                   memory: int | None = None) -> int:
    """`asked` worker processes (0: one per core), lowered to the usable cores and to what the free memory holds
    at `per_worker_bytes` each (never below 1); one log line naming `key` when lowered."""
    cores = usable_cores() if cores is None else cores
    memory = available_memory() if memory is None else memory
    wanted = asked or cores
    fits = max(1, int(memory // per_worker_bytes)) if memory is not None else wanted
    workers = max(1, min(wanted, cores, fits))
    if workers < wanted:
        free = f"{memory / GB:.0f} GB free" if memory is not None else "free memory unknown"
        log.warning("%s: %s lowered to %d (%d cores, %s, about %.1f GB per worker)", key,
                    asked or f"0 (one per core, {cores})", workers, cores, free, per_worker_bytes / GB)
    return workers
