"""Training runs the distribution tests start in fresh processes (device layout and TF_CONFIG are fixed
when TensorFlow starts, so they cannot change inside the pytest process).

    python -m tests.distributed_runs mirrored OUT.json   # one device, then MirroredStrategy on 2 logical CPUs
    python -m tests.distributed_runs worker OUT.json     # one run under choose_strategy() (TF_CONFIG decides)
    python -m tests.distributed_runs fine_tune OUT.json PARAMS   # the fine_tune stage, keeping the trained weights
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Deterministic, so one device and several replicas see the same global batches: no dropout.
HEAD = {"epochs": 6, "patience": 10, "dropout": 0.0, "learning_rate": 0.01, "batch_size": 16, "l2": 0.0}  # no probe here


def blobs(n: int, classes: int = 3, width: int = 16, seed: int = 0):
    from transferlab.modeling.features import SplitFeatures

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    centers = np.random.default_rng(99).normal(0, 3, (classes, width))
    return SplitFeatures((centers[labels] + rng.normal(0, 1, (n, width))).astype(np.float32), labels,
                         np.array([str(i) for i in range(n)]))


def train(strategy, per_replica_batch: int) -> dict:
    from transferlab.modeling.head import train_head
    from transferlab.core.params import HeadParams

    result = train_head(HeadParams(**{**HEAD, "batch_size": per_replica_batch}), blobs(128), blobs(48, seed=1), 3,
                        seed=0, verbose=0, strategy=strategy)
    return {"loss": result.history["loss"], "val_loss": result.history["val_loss"],
            "replicas": strategy.num_replicas_in_sync,
            "weights": [w.tolist() for w in result.model.get_weights()]}


def fine_tune_stage(params: str, out: str) -> dict:
    """Run the fine_tune stage (untracked); the weights its training reached, before the choice between them and
    the head-only start (the figures to compare however that choice falls), go to OUT's .npz beside it; OUT records
    the shard files it read for each epoch."""
    import stages.fine_tune
    import transferlab.modeling.fine_tune_workers as workers
    from transferlab.stage_runner import run_stage

    trained = {"read": []}
    fit_across_workers = workers.fit_across_workers
    file_sharded_batches = workers.file_sharded_batches

    def recording_the_files_read(files, batch_size, seed, *args, **kwargs):
        trained["read"].append({"seed": seed, "files": [Path(path).name for path in files]})
        return file_sharded_batches(files, batch_size, seed, *args, **kwargs)

    def keeping_the_trained_weights(fitted, *args, **kwargs):
        fit, initial = fit_across_workers(fitted, *args, **kwargs)
        np.savez(Path(out).with_suffix(".npz"), *fitted.get_weights())
        trained.update(history=fit.history, first_epoch=fit.first_epoch)
        return fit, initial

    workers.fit_across_workers = keeping_the_trained_weights
    workers.file_sharded_batches = recording_the_files_read  # which shard files this worker read, epoch by epoch
    code = run_stage("fine_tune", stages.fine_tune.run, ["fine_tune"], ["--params", params, "--no-track"])
    return {**trained, "exit_code": code}


def main() -> None:
    mode, out = sys.argv[1], sys.argv[2]
    import tensorflow as tf

    if mode == "fine_tune":
        result = fine_tune_stage(sys.argv[3], out)
    elif mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from transferlab.modeling.distribution import choose_strategy

        one = train(tf.distribute.get_strategy(), HEAD["batch_size"])
        # The same global batch of 16 split over two replicas of 8.
        two = train(choose_strategy(devices=["/cpu:0", "/cpu:1"]), HEAD["batch_size"] // 2)
        result = {"one": one, "two": two}
    else:
        from transferlab.modeling.distribution import choose_strategy, is_chief

        strategy = choose_strategy()
        workers = len(json.loads(os.environ["TF_CONFIG"])["cluster"]["worker"]) if "TF_CONFIG" in os.environ else 1
        result = {**train(strategy, HEAD["batch_size"] // workers), "chief": is_chief(),
                  "strategy": type(strategy).__name__}
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
