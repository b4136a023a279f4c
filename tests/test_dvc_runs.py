"""`transferlab repro` and `exp run`: what happens to dvc and its stage when the command is stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import PROJECT_ROOT
from tests.process_trees import marked, survivors

# A stand-in for dvc: it starts a stage that works for minutes and, as dvc does while a stage runs, leaves Ctrl-C to
# the stage (it ignores SIGINT itself).
FAKE_DVC = """import signal, subprocess, sys
stage = subprocess.Popen([sys.executable, "-c", "import os, pathlib, sys, time; "
                          "pathlib.Path(sys.argv[1]).write_text(str(os.getpid())); time.sleep(300)", sys.argv[-1]])
signal.signal(signal.SIGINT, signal.SIG_IGN)
print("Running stage 'fake':", flush=True)
sys.exit(stage.wait())
"""
# The command's process as `transferlab repro` runs it: its own handlers, then run_dvc with the stand-in found as dvc.
COMMAND = """import shutil, sys
from transferlab import dvc_runs
from transferlab.core.interrupts import stop_on_interrupts
stop_on_interrupts()
dvc_runs.shutil.which = lambda *args, **kwargs: sys.argv[1]
try:
    sys.exit(dvc_runs.run_dvc(["repro"], [sys.argv[2]], None if sys.argv[3] == "-" else sys.argv[3]))
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.parametrize("summarized", ["repro", "-"], ids=["repro", "exp-run-queued"])
def test_a_sigterm_to_the_command_ends_dvc_and_its_stage(tmp_path, summarized):
    """Hostile round of issue 42: `kill <pid of transferlab repro>` exited 130 at once and left dvc and the stage
    running (the stage to its end, 10 s later in a small run); a Ctrl-C sent to the command alone did the same."""
    fake = tmp_path / "dvc"
    fake.write_text(f"#!{sys.executable}\n{FAKE_DVC}", encoding="utf-8")
    fake.chmod(0o755)
    started = tmp_path / "stage.pid"
    env = marked({**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    command = subprocess.Popen([sys.executable, "-c", textwrap.dedent(COMMAND), str(fake), str(started), summarized],
                               cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # a background job
    while not started.exists() and command.poll() is None:
        time.sleep(0.1)
    command.send_signal(signal.SIGTERM)
    assert command.wait(timeout=60) == 130
    assert survivors(env, wait_s=20) == []
