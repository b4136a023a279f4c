"""The shell of every stage: interrupts and I/O errors a user fixes end in one line; bugs keep their traceback."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from transferlab.stage_runner import run_stage


def _params(tmp_path):
    (tmp_path / "params.yaml").write_text("{}\n")
    return ["--params", str(tmp_path / "params.yaml"), "--no-track"]


def test_a_full_disk_is_one_line_naming_the_file(tmp_path, capsys):
    def body(context):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "data" / "prepared" / "train-00001"))

    assert run_stage("preprocess", body, [], _params(tmp_path)) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"preprocess: error: {tmp_path}/data/prepared/train-00001: No space left on device "
                   f"(the disk is full; free space (or move paths.scratch) and run again)")


def test_an_os_error_that_is_a_bug_keeps_its_traceback(tmp_path):
    def body(context):
        raise OSError(errno.EBADF, "Bad file descriptor")

    with pytest.raises(OSError, match="Bad file descriptor"):
        run_stage("preprocess", body, [], _params(tmp_path))


@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("disposition", [signal.SIG_IGN, signal.SIG_DFL], ids=["background-job", "terminal"])
def test_ctrl_c_and_sigterm_end_in_one_line_and_exit_130(tmp_path, sent, disposition):
    script = textwrap.dedent('''
        import sys, time
        from transferlab.stage_runner import main_for

        def body(context):
            print("working", flush=True)
            time.sleep(60)

        main_for("train_head", body, [])
    ''')
    (tmp_path / "params.yaml").write_text("{}\n")
    # A job started in the background by a shell inherits SIGINT ignored; a terminal's stage does not: it stops
    # on both (issue 42), whatever this test's own process inherited.
    process = subprocess.Popen([sys.executable, "-c", script, "--no-track"], cwd=tmp_path, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"PYTHONPATH": str(PROJECT_ROOT)},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, disposition))
    assert process.stdout.readline().strip() == "working"
    process.send_signal(sent)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert err.strip().splitlines()[-1].startswith("train_head: interrupted;") and "Traceback" not in err


def test_each_stage_says_how_long_its_start_up_and_its_work_took(tmp_path, caplog):
    import logging
    import re

    ran = []
    with caplog.at_level(logging.INFO, "transferlab.progress"):
        assert run_stage("download", ran.append, [], _params(tmp_path)) == 0
    lines = [record.getMessage() for record in caplog.records if record.name == "transferlab.progress"]
    assert len(ran) == 1 and len(lines) == 2
    assert re.fullmatch(r"download: work starts after \d+\.\d s of start-up", lines[0])
    assert re.fullmatch(r"download: work done in \d+\.\d s", lines[1])


@pytest.mark.parametrize("locale_env", [{"LC_ALL": "C", "PYTHONUTF8": "0"}, {"LC_ALL": "C"}, {"LANG": "C.UTF-8"}],
                         ids=["ascii-file-names", "C", "C.UTF-8"])
def test_class_names_stay_utf8_under_any_locale(tmp_path, locale_env):
    """Issue 31: with LC_ALL=C PYTHONUTF8=0 Python decoded `café/` with ASCII and every image was left out."""
    import numpy as np
    from PIL import Image

    from transferlab.workspace import set_params

    for number, name in enumerate(["café", "Škoda", "ığdır"]):  # ı and İ: the Turkish locale's own letters
        (tmp_path / "src" / name).mkdir(parents=True)
        for index in range(3):
            Image.fromarray(np.full((8, 8, 3), 30 * number + index, np.uint8)).save(tmp_path / "src" / name / f"{index}.png")
    (tmp_path / "params.yaml").write_text((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    set_params(tmp_path / "params.yaml", {"data.source": "folder", "data.folder.root": "src"})
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path), **locale_env}
    done = subprocess.run([sys.executable, "-m", "stages.download", "--params", str(tmp_path / "params.yaml"),
                           "--no-track"], cwd=PROJECT_ROOT, env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")[-2000:]
    found = sorted(os.fsencode(path.name).decode("utf-8") for path in (tmp_path / "data/raw/images/all").iterdir())
    assert found == sorted(["café", "Škoda", "ığdır"])
