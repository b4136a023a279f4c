"""kill -9 in the middle of extract_features and fine_tune: the rerun resumes, finishes, and matches a clean run."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, STAGES, run_stages
from transferlab.workspace import SMOKE_PARAMS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# Many small shards, so a kill lands between shards; several epochs (never stopped early), so one lands between
# epochs. The head is params.yaml's.
DATA = {**SMOKE_PARAMS, "data.synthetic.images_per_class": 20, "data.shard_size": 4, "fine_tune.epochs": 4,
        "fine_tune.patience": 10, "fine_tune.unfreeze_top": 5}


def _start(stage: str, params: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", f"stages.{stage}", "--params", str(params), "--no-track"],
                            cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill_when(process: subprocess.Popen, ready) -> None:
    """SIGKILL `process` as soon as `ready()` holds; fails if the process ends first (a stage that hangs is
    stopped by the module's pytest-timeout, not by a wall-clock assertion)."""
    while not ready():
        assert process.poll() is None, "the stage finished before it could be killed"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clean")
    run_stages(root, DATA, STAGES[:5])
    return root


def _copy_up_to(clean: Path, target: Path, removed: tuple[str, ...]) -> Path:
    """The clean run's workspace without the outputs of the stage to kill (and no resume state): its inputs
    are the clean run's own, byte for byte."""
    shutil.copytree(clean, target, ignore=shutil.ignore_patterns(".cache"))
    for output in map(target.joinpath, removed):
        if output.is_dir():
            shutil.rmtree(output)
        else:
            output.unlink()
    return target / "params.yaml"


def test_killed_extraction_resumes_from_its_shards_and_matches_a_clean_run(clean, tmp_path):
    workspace = tmp_path / "ws"
    params = _copy_up_to(clean, workspace, ("data/features", "models", "metrics"))
    scratch = workspace / ".cache" / "transferlab" / "features"
    process = _start("extract_features", params)
    _kill_when(process, lambda: len(list(scratch.glob("*/*.npz"))) >= 2)
    assert not (workspace / "data" / "features" / "resnet50").exists()  # never a half-made output
    assert all(p.name.endswith(".npz") for p in scratch.glob("*/*"))  # shards appear whole (temp, rename)
    run_stages(workspace, {}, ["extract_features"])
    features = workspace / "data" / "features" / "resnet50"
    meta = json.loads((features / "meta.json").read_text())
    assert meta["resumed_shards"] >= 2
    reference = clean / "data" / "features" / "resnet50"
    for path in sorted(reference.glob("*.npz")):
        assert path.read_bytes() == (features / path.name).read_bytes(), path.name
    assert [p.name for p in (workspace / "data" / "features").iterdir()] == ["resnet50"]  # the killed temp is gone


def test_killed_fine_tune_resumes_from_its_last_epoch_and_matches_a_clean_run(clean, tmp_path, caplog):
    workspace = tmp_path / "ws"
    params = _copy_up_to(clean, workspace, ("models/fine_tuned", "metrics/fine_tune.json"))
    log = workspace / ".cache" / "transferlab" / "fine_tune"
    process = _start("fine_tune", params)
    # Killed once an epoch is logged and backed up, before the last one.
    _kill_when(process, lambda: any(len(p.read_text().splitlines()) >= 2 for p in log.glob("*/history.csv"))
               and any(log.glob("*/backup/*")))
    assert not (workspace / "models" / "fine_tuned").exists()
    done = max(len(p.read_text().splitlines()) - 1 for p in log.glob("*/history.csv"))  # epochs logged before the kill
    with caplog.at_level("INFO", logger="transferlab.fine_tune"):
        run_stages(workspace, {}, ["fine_tune"])
    resumed_at = [int(m.group(1)) for m in (re.search(r"resumed a killed run at epoch (\d+) of 4", r.getMessage())
                                          for r in caplog.records) if m]
    assert resumed_at and resumed_at[0] >= done + 1 > 1  # it went on from the backup, not from epoch 1
    resumed = json.loads((workspace / "metrics" / "fine_tune.json").read_text())
    reference = json.loads((clean / "metrics" / "fine_tune.json").read_text())
    assert resumed["epochs_run"] == reference["epochs_run"] == 4  # the killed run's epochs are not lost
    assert abs(resumed["val_loss"] - reference["val_loss"]) < 0.5 * max(reference["val_loss"], 0.05)
    assert abs(resumed["val_accuracy"] - reference["val_accuracy"]) <= 0.25
    assert not any(log.glob("*"))  # the resume state is removed once the output is complete
