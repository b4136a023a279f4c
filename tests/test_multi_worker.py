"""Two worker processes on 127.0.0.1 under MultiWorkerMirroredStrategy train the head to the same loss as one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import PROJECT_ROOT, run_loopback_cluster

pytestmark = pytest.mark.slow


def _cluster_run(tmp_path, workers: int) -> list[dict]:
    outs = [tmp_path / f"{workers}-worker-{index}.json" for index in range(workers)]
    run_loopback_cluster([[sys.executable, "-m", "tests.distributed_runs", "worker", str(out)] for out in outs])
    return [json.loads(out.read_text()) for out in outs]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multi_worker")
    single = tmp / "fit.json"
    subprocess.run([sys.executable, "-m", "tests.distributed_runs", "worker", str(single)], cwd=PROJECT_ROOT,
                   check=True, timeout=300, capture_output=True, env={k: v for k, v in os.environ.items()
                                                                      if k != "TF_CONFIG"})
    return {"two": _cluster_run(tmp, 2), "one": _cluster_run(tmp, 1)[0], "fit": json.loads(single.read_text())}


def test_two_workers_agree_and_only_worker_0_is_chief(runs):
    first, second = runs["two"]
    # tf.distribute.MultiWorkerMirroredStrategy is the public name of CollectiveAllReduceStrategy.
    assert first["strategy"] == second["strategy"] == "CollectiveAllReduceStrategy"
    assert first["replicas"] == second["replicas"] == 2
    assert (first["chief"], second["chief"]) == (True, False)
    assert first["loss"] == second["loss"]  # one all-reduced model: both workers hold the same numbers


def test_two_workers_reach_the_same_loss_as_one(runs):
    two, one = runs["two"][0], runs["one"]
    assert one["replicas"] == 1
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(two["val_loss"], one["val_loss"], rtol=1e-4, atol=1e-5)
    assert two["loss"][-1] < two["loss"][0] / 2


def test_the_cluster_loop_trains_like_keras_fit_on_one_process(runs):
    # Keras `fit` shuffles its own way, so batches differ: the same result within a training-noise margin.
    two, fit = runs["two"][0], runs["fit"]
    assert fit["strategy"] == "_DefaultDistributionStrategy" and fit["replicas"] == 1
    assert abs(two["val_loss"][-1] - fit["val_loss"][-1]) < 0.1, (two["val_loss"], fit["val_loss"])


def test_train_head_stage_runs_as_a_cluster_and_only_the_chief_writes(tmp_path):
    from tests.conftest import STAGES, run_stages
    from transferlab.workspace import SMOKE_PARAMS

    params = run_stages(tmp_path, {**SMOKE_PARAMS, "head.batch_size": 4}, STAGES[:3])
    command = [sys.executable, "-m", "stages.train_head", "--params", str(params), "--no-track"]
    chief, other = run_loopback_cluster([command, command])
    metrics = json.loads((tmp_path / "metrics" / "train_head" / "resnet50.json").read_text())
    assert metrics["epochs_run"] == SMOKE_PARAMS["head.epochs"]  # patience 20: every epoch runs, on both workers
    assert (tmp_path / "models" / "head" / "resnet50" / "head.keras").is_file()
    assert "the chief writes the outputs" in other and "the chief writes the outputs" not in chief


def test_a_restarted_cluster_resumes_from_the_last_epoch_every_worker_kept(monkeypatch, tmp_path):
    """Killed between two workers' saves: this worker kept epochs 1 and 2, the other only 1. Both must restore 1
    (each restoring its own latest would leave the replicas apart)."""
    from transferlab.modeling import multi_worker

    def with_the_other_worker(strategy, value: float) -> float:
        # the other worker's part in each question _restore asks: its latest epoch, negated (-1), and whether it
        # holds the agreed one, negated (-1: it holds epoch 1)
        return max(value, -1.0)

    restored = []

    class Manager:
        checkpoints = [str(tmp_path / "ckpt-1"), str(tmp_path / "ckpt-2")]

        class checkpoint:  # noqa: N801 (tf.train.Checkpoint's attribute name)
            @staticmethod
            def restore(path):
                restored.append(path)
                return type("Status", (), {"assert_existing_objects_matched": lambda self: None})()

    monkeypatch.setattr(multi_worker, "across_workers_max", with_the_other_worker)
    logged = []
    assert multi_worker._restore(Manager(), None, logged.append) == 1
    assert restored == [str(tmp_path / "ckpt-1")] and logged == ["resumed from the checkpoint of epoch 1"]
