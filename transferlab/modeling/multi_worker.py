"""Training under MultiWorkerMirroredStrategy, where Keras 3's `Model.fit` cannot go.

Keras 3 `fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585, still open for TF 2.21 /
Keras 3.15: it reduces the first batch across workers to build the model, then trips over loss
reduction). This is TensorFlow's documented custom loop for that strategy, with the Keras model,
loss and optimizer: every worker reads its shard of each global batch, gradients are all-reduced, the
validation sums are all-reduced so that every worker sees the same validation loss and stops on the same
epoch, and early stopping restores the best epoch the way `keras.callbacks.EarlyStopping` does. With a
checkpoint folder, each worker saves the loop's whole state every epoch (`tf.train.CheckpointManager`) and a
restarted cluster resumes at the last epoch all its workers finished.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transferlab.modeling.outputs import Output

HISTORY_LOG = "history.csv"


@dataclass(frozen=True)
class WorkerPlan:
    """What the loop reads: `train_for_epoch(epoch)` gives the `dataset_fn(input_context)` of that epoch's training
    batches (each worker's share of every global batch, the same number of batches on every worker); `validation_fn`
    gives each worker's share of the validation split (or None: early stopping watches the training loss)."""

    train_for_epoch: Callable[[int], Callable[[Any], Any]]
    validation_fn: Callable[[Any], Any] | None
    global_batch: int
    epochs: int
    patience: int
    checkpoints: Path | None = None  # this worker's own folder (the chief's is the one that is kept); None: no resume


@dataclass
class WorkerFit:
    history: dict[str, list[float]]
    first_epoch: int  # 1 for a fresh run; later when a checkpoint was resumed


def _sums(output: Output, labels, probabilities, per_example):
    import tensorflow as tf

    matches = tf.equal(output.predicted(probabilities), tf.cast(tf.reshape(labels, [-1]), tf.int64))
    return tf.stack([tf.reduce_sum(per_example), tf.reduce_sum(tf.cast(matches, tf.float32)),
                     tf.cast(tf.size(per_example), tf.float32)])


def is_multi_worker(strategy: Any) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def regularization(model):
    """The model's summed penalties (L2 on the head's logits), as Keras `fit` adds them to the loss."""
    import tensorflow as tf

    return tf.add_n(model.losses) if model.losses else tf.constant(0.0)


def all_reduced_sum(strategy: Any, values) -> np.ndarray:
    """Element-wise sum of a local vector over every worker (the same answer on each)."""
    import tensorflow as tf

    local = tf.constant(np.asarray(values, np.float32))
    return strategy.reduce("SUM", strategy.run(lambda: tf.identity(local)), axis=None).numpy()


class _LoopState:
    """Everything a resumed loop needs beside the model and optimizer, as variables a checkpoint holds."""

    def __init__(self, model) -> None:
        import tensorflow as tf

        self.module = tf.Module()
        self.module.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)  # epochs finished
        self.module.best = tf.Variable(np.inf, dtype=tf.float64, trainable=False)
        self.module.waited = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.module.best_weights = [tf.Variable(weight.value, trainable=False) for weight in model.weights]


def _restore(manager, strategy: Any, log: Callable[[str], None]) -> int:
    """Restore the last epoch every worker has a checkpoint of (a kill can fall between two workers' saves);
    returns it (0: a fresh start)."""
    mine = {int(path.rsplit("-", 1)[1]): path for path in manager.checkpoints}
    latest = max(mine, default=0)
    agreed = int(-across_workers_max(strategy, -latest))  # the smallest of the workers' latest epochs
    everyone_has_it = -across_workers_max(strategy, -float(agreed in mine)) == 1.0
    if agreed and everyone_has_it:
        manager.checkpoint.restore(mine[agreed]).assert_existing_objects_matched()
        log(f"resumed from the checkpoint of epoch {agreed}")
        return agreed
    return 0


def across_workers_max(strategy: Any, value: float) -> float:
    """The largest of one number across workers (the same answer on each)."""
    import tensorflow as tf

    local = tf.constant([value], tf.float32)
    return float(tf.reduce_max(strategy.gather(strategy.run(lambda: tf.identity(local)), axis=0)))


def fit_multi_worker(model, optimizer, plan: WorkerPlan, strategy: Any,
                     log: Callable[[str], None] = print) -> WorkerFit:
    """Train `model` (built in `strategy.scope()`) for up to `plan.epochs`; returns a Keras-style history."""
    import tensorflow as tf

    output = Output.of(model)
    loss = output.loss(reduction=None)
    with strategy.scope():
        optimizer.build(model.trainable_variables)
        state = _LoopState(model).module
    manager = None
    if plan.checkpoints is not None:
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, loop=state)
        manager = tf.train.CheckpointManager(checkpoint, str(plan.checkpoints), max_to_keep=2)
    start = _restore(manager, strategy, log) if manager else 0

    @tf.function
    def train_step(images, labels):
        def replica_step(images, labels):
            with tf.GradientTape() as tape:
                probabilities = model(images, training=True)
                per_example = loss(output.targets(labels), probabilities)
                scaled = tf.nn.compute_average_loss(per_example, global_batch_size=plan.global_batch)
                scaled += tf.nn.scale_regularization_loss(regularization(model))
            gradients = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return _sums(output, labels, probabilities, per_example)
        return strategy.reduce("SUM", strategy.run(replica_step, args=(images, labels)), axis=None)

    evaluate = validation_evaluator(model, strategy, plan.validation_fn) if plan.validation_fn else None

    history = _history_so_far(plan.checkpoints, start)
    for epoch in range(start, plan.epochs):
        sums = np.zeros(3)
        batches = strategy.distribute_datasets_from_function(plan.train_for_epoch(epoch))
        for images, labels in batches:
            sums += train_step(images, labels).numpy()
        row = {"loss": sums[0] / sums[2] + float(regularization(model)), "accuracy": sums[1] / sums[2]}
        if evaluate is not None:
            row.update(zip(("val_loss", "val_accuracy"), evaluate()))
        for name, value in row.items():
            history.setdefault(name, []).append(float(value))
        log(f"epoch {epoch + 1}/{plan.epochs}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()))
        stop = _early_stopping(state, model, row["val_loss" if plan.validation_fn else "loss"], plan.patience)
        state.epoch.assign(epoch + 1)
        if manager is not None:
            _append_history(plan.checkpoints, epoch + 1, row)
            manager.save(checkpoint_number=epoch + 1)
        if stop:
            break
    if np.isfinite(state.best.numpy()):
        for weight, best in zip(model.weights, state.best_weights):
            weight.assign(best)
    return WorkerFit(history, start + 1)


def validation_evaluator(model, strategy: Any, validation_fn: Callable[[Any], Any]) -> Callable[[], tuple[float, float]]:
    """A function giving the validation (loss with the model's penalties, accuracy): each worker evaluates its
    share (`validation_fn(input_context)`) and the sums are all-reduced, so every worker gets the same figures."""
    import tensorflow as tf

    output = Output.of(model)
    loss = output.loss(reduction=None)
    context = worker_input_context(strategy)

    @tf.function
    def evaluate_step(images, labels):
        probabilities = model(images, training=False)
        return _sums(output, labels, probabilities, loss(output.targets(labels), probabilities))

    def evaluate() -> tuple[float, float]:
        local = np.zeros(3, np.float32)
        for images, labels in validation_fn(context):
            local += evaluate_step(images, labels).numpy()
        total = all_reduced_sum(strategy, local)
        return float(total[0] / max(total[2], 1) + float(regularization(model))), float(total[1] / max(total[2], 1))

    return evaluate


def worker_input_context(strategy: Any):
    """This worker's place among the input pipelines, numbered as `distribute_datasets_from_function` numbers
    them: the chief (if the cluster has one) first, then the workers."""
    import tensorflow as tf

    resolver = strategy.cluster_resolver
    spec = resolver.cluster_spec()
    chiefs = spec.num_tasks("chief") if "chief" in spec.jobs else 0
    index = resolver.task_id + (chiefs if resolver.task_type == "worker" else 0)
    return tf.distribute.InputContext(num_input_pipelines=chiefs + spec.num_tasks("worker"), input_pipeline_id=index,
                                      num_replicas_in_sync=strategy.num_replicas_in_sync)


def _early_stopping(state, model, monitored: float, patience: int) -> bool:
    """The rule of keras.callbacks.EarlyStopping(patience=..., restore_best_weights=True); True: stop now."""
    if monitored < state.best.numpy():
        state.best.assign(monitored)
        state.waited.assign(0)
        for best, weight in zip(state.best_weights, model.weights):
            best.assign(weight.value)
        return False
    state.waited.assign_add(1)
    return state.waited.numpy() >= patience


def _append_history(folder: Path, epoch: int, row: dict[str, float]) -> None:
    log = Path(folder) / HISTORY_LOG
    new = not log.is_file()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["epoch", *row])
        if new:
            writer.writeheader()
        writer.writerow({"epoch": epoch, **row})


def _history_so_far(folder: Path | None, epochs: int) -> dict[str, list[float]]:
    """The per-epoch rows of the epochs a resumed checkpoint holds (a row logged after that save is dropped)."""
    if not epochs or folder is None or not (Path(folder) / HISTORY_LOG).is_file():
        return {}
    import pandas as pd

    table = pd.read_csv(Path(folder) / HISTORY_LOG).drop_duplicates("epoch", keep="last")
    table = table[table["epoch"] <= epochs].sort_values("epoch")
    return {name: [float(v) for v in table[name]] for name in table.columns if name != "epoch"}
