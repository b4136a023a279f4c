"""Fine-tuning across the workers of a TF_CONFIG cluster: file-sharded input for the custom loop of multi_worker.py.

Each epoch deals the training shard files out in one seeded order that every worker computes alike (worker w
reads files w, w + W, ...), so a worker reads only its files and no example is read twice; every worker takes
the same fixed number of whole batches, so the all-reduce never waits for a worker that ran out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from transferlab.core.errors import ParamsError
from transferlab.core.params import FineTuneParams
from transferlab.core.wording import plural
from transferlab.data.prepared import file_sharded_batches, image_batches, shard_files, shard_sizes
from transferlab.modeling.multi_worker import WorkerFit, WorkerPlan, fit_multi_worker, validation_evaluator

CHECKPOINTS = "checkpoints"


def steps_per_epoch(sizes: list[int], workers: int, per_worker_batch: int) -> int:
    """Whole batches every worker can take in any epoch: each is dealt at least F // W of the F shard files, and
    at worst the smallest ones."""
    if len(sizes) < workers:
        raise ParamsError(f"data.shard_size: the training split has {plural(len(sizes), 'shard file')} for "
                          f"{plural(workers, 'worker')} "
                          f"(each worker reads its own files); lower data.shard_size to make at least {workers}")
    fewest = sum(sorted(sizes)[:len(sizes) // workers])
    if fewest < per_worker_batch:
        raise ParamsError(f"fine_tune.batch_size: a worker may hold only {fewest} training images, fewer than its "
                          f"batch of {per_worker_batch}; lower fine_tune.batch_size or use fewer workers")
    return fewest // per_worker_batch


def epoch_order(files: list[Path], seed: int, epoch: int) -> list[Path]:
    """The shard files in this epoch's order: the same on every worker, another each epoch."""
    return [files[i] for i in np.random.default_rng([seed, epoch]).permutation(len(files))]


def worker_plan(prepared: Path, cfg: FineTuneParams, strategy: Any, seed: int, augment, checkpoints: Path | None
                ) -> WorkerPlan:
    """The loop's input: training shards dealt out per epoch, validation shards dealt out once."""
    from transferlab.modeling.multi_worker import worker_input_context

    context = worker_input_context(strategy)
    workers, replicas = context.num_input_pipelines, strategy.num_replicas_in_sync
    per_worker = cfg.batch_size * replicas // workers
    train_files = shard_files(prepared, "train")
    sizes = shard_sizes(prepared)
    steps = steps_per_epoch([sizes[path.name] for path in train_files], workers, per_worker)

    def train_for_epoch(epoch: int):
        ordered = epoch_order(train_files, seed, epoch)

        def dataset_fn(input_context):
            mine = ordered[input_context.input_pipeline_id::input_context.num_input_pipelines]
            batches = file_sharded_batches(mine, cfg.batch_size, seed + epoch, augment)
            return batches.take(steps * replicas // workers)
        return dataset_fn

    validation_files = shard_files(prepared, "validation")

    def validation_fn(input_context):
        mine = validation_files[input_context.input_pipeline_id::input_context.num_input_pipelines]
        return image_batches(mine, cfg.batch_size, with_keys=False)

    return WorkerPlan(train_for_epoch, validation_fn if validation_files else None, cfg.batch_size * replicas,
                      cfg.epochs, cfg.patience, checkpoints)


def fit_across_workers(fitted, prepared: Path, cfg: FineTuneParams, scratch: Path, seed: int, strategy: Any,
                       augment, log) -> tuple[WorkerFit, dict[str, float]]:
    """Train under MultiWorkerMirroredStrategy; returns the fit and the head-only start's validation figures.

    Checkpoints go to this worker's own folder under `scratch` (the chief's, and worker-<i> for the others), so a
    worker restarted on its own machine finds its own; a restarted cluster resumes where all of them got to."""
    from transferlab.modeling.distribution import is_chief
    from transferlab.modeling.multi_worker import worker_input_context

    index = worker_input_context(strategy).input_pipeline_id
    folder = scratch / (CHECKPOINTS if is_chief() else f"{CHECKPOINTS}-worker-{index}")
    plan = worker_plan(prepared, cfg, strategy, seed, augment, folder)
    if plan.validation_fn is None:
        raise ParamsError("data.val_fraction: fine-tuning across workers needs a validation split (early stopping "
                          "and the choice of weights read it)")
    initial_loss, initial_accuracy = validation_evaluator(fitted, strategy, plan.validation_fn)()
    fit = fit_multi_worker(fitted, fitted.optimizer, plan, strategy, log)
    return fit, {"val_loss": initial_loss, "val_accuracy": initial_accuracy}
