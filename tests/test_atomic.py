import pytest

from transferlab.core.atomic import atomic_dir, atomic_write_text


def test_success_replaces_the_folder_whole(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_dir(target) as temp:
        (temp / "new.txt").write_text("new")
        assert (target / "old.txt").exists()  # the old output stays visible until the end
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failure_leaves_the_old_output_and_no_debris(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as temp:
            (temp / "half.txt").write_text("half")
            raise RuntimeError("killed")
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_write_text_leaves_no_temp_file(tmp_path):
    atomic_write_text(tmp_path / "a" / "b.json", "{}")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.json"]


def test_debris_of_a_killed_writer_is_removed_and_a_live_writers_kept(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # that process has exited: its pid is free
    target = tmp_path / "out"
    (tmp_path / f".out.tmp-{dead_pid}").mkdir()
    (tmp_path / f".out.tmp-{dead_pid}" / "half.npz").write_bytes(b"half")
    (tmp_path / f".out.old-{dead_pid}").mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / f".out.tmp-{live.pid}").mkdir()
        with atomic_dir(target) as temp:
            (temp / "new.txt").write_text("new")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", f".out.tmp-{live.pid}"])
    finally:
        live.kill()
    (tmp_path / f".b.json.tmp-{dead_pid}").write_text("{half")
    atomic_write_text(tmp_path / "b.json", "{}")
    assert not (tmp_path / f".b.json.tmp-{dead_pid}").exists()
