"""Worker counts lowered to the cores and the free memory there are; the counts here are the tests', not the machine's."""

from __future__ import annotations

import logging

import pytest

from transferlab.core.resources import available_memory, capped_workers

GB = 10**9


@pytest.mark.parametrize(("asked", "cores", "memory", "expected"), [
    (64, 2, 22 * GB, 2),  # the cores decide
    (8, 16, 3 * GB, 3),  # the memory decides: 1 GB a worker
    (0, 16, 64 * GB, 16),  # 0: one per core
    (0, 16, 0, 1),  # no memory to spare still runs one
    (4, 16, None, 4),  # memory unknown (not Linux): the cores alone
])
def test_a_worker_count_is_lowered_to_the_cores_and_the_memory(asked, cores, memory, expected):
    assert capped_workers(asked, "extract.workers", 1 * GB, cores=cores, memory=memory) == expected


def test_lowering_is_said_in_one_line_naming_the_key(caplog):
    with caplog.at_level(logging.INFO, "transferlab.resources"):
        assert capped_workers(4, "data.num_workers", 0.3 * GB, cores=8, memory=64 * GB) == 4
        assert not caplog.records
        capped_workers(64, "data.num_workers", 0.3 * GB, cores=2, memory=22 * GB)
    assert [record.getMessage() for record in caplog.records] == [
        "data.num_workers: 64 lowered to 2 (2 cores, 22 GB free, about 0.3 GB per worker)"]


def _proc(tmp_path, available_kb: int, cgroup: str):
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True, exist_ok=True)
    (proc / "meminfo").write_text(f"MemTotal:       32000000 kB\nMemAvailable:   {available_kb} kB\n")
    (proc / "self" / "cgroup").write_text(cgroup)
    return proc


def test_free_memory_is_the_kernels_unless_the_cgroup_limit_is_closer(tmp_path):
    cgroups = tmp_path / "cgroup"
    (cgroups / "job").mkdir(parents=True)
    v2 = _proc(tmp_path, 8_000_000, "0::/job\n")
    (cgroups / "job" / "memory.max").write_text("max\n")
    (cgroups / "job" / "memory.current").write_text("1000000000\n")
    assert available_memory(v2, cgroups) == 8_000_000 * 1024  # no limit
    (cgroups / "job" / "memory.max").write_text("3000000000\n")
    assert available_memory(v2, cgroups) == 2 * GB  # a 3 GB container using 1 GB
    (cgroups / "memory").mkdir()  # v1, inside a cgroup namespace: the mount is the process's own cgroup
    (cgroups / "memory" / "memory.limit_in_bytes").write_text("1500000000\n")
    (cgroups / "memory" / "memory.usage_in_bytes").write_text("1000000000\n")
    v1 = _proc(tmp_path, 8_000_000, "4:memory:/process_api/abc\n0::/\n")
    assert available_memory(v1, cgroups) == GB // 2
    assert available_memory(tmp_path / "nothing", cgroups) is None
