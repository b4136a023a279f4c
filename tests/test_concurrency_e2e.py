"""Two `dvc repro` in one workspace: the second stops with DVC's lock message; the first finishes cleanly.
(Prefect flow runs on one workspace wait for each other instead: tests/test_flows.py.)"""

from __future__ import annotations

import subprocess

import pytest

from transferlab.workspace import run_tool, set_params, tool_env

pytestmark = pytest.mark.slow


def test_a_second_repro_is_refused_by_dvcs_lock_and_outputs_stay_consistent(workspace_copy):
    workspace, _ = workspace_copy
    set_params(workspace / "params.yaml", {"head.dropout": 0.25})  # the heads must run again: the lock is held
    first = subprocess.Popen(["dvc", "repro", "train_head"], cwd=workspace, env=tool_env({}), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        assert first.stdout is not None
        for line in first.stdout:  # wait until the first one is inside a stage, holding the lock
            if line.startswith("Running stage"):
                break
        second = run_tool(workspace, "dvc", "repro", "train_head", check=False)
        rest = first.stdout.read()
        assert first.wait(timeout=600) == 0, rest[-2000:]
    finally:
        first.kill()
    message = second.stdout + second.stderr
    assert second.returncode != 0
    # DVC's repo lock ("Unable to acquire lock") or, inside a stage, its per-output lock naming the holder.
    assert "Unable to acquire lock" in message or ("is busy, it is being blocked by" in message and "dvc repro" in message)
    status = run_tool(workspace, "dvc", "status", "train_head").stdout
    assert "up to date" in status
    # what the first repro left is what dvc.lock says it ran: the new dropout, and the metrics file it hashed
    import hashlib

    import yaml

    locked = yaml.safe_load((workspace / "dvc.lock").read_text())["stages"]["train_head@resnet50"]
    assert locked["params"]["params.yaml"]["head"]["dropout"] == 0.25
    metrics = workspace / "metrics" / "train_head" / "resnet50.json"
    [entry] = [out for out in locked["outs"] if out["path"] == "metrics/train_head/resnet50.json"]
    assert hashlib.md5(metrics.read_bytes()).hexdigest() == entry["md5"]
