"""Fine-tuning changes only the unfrozen top: BatchNorm statistics and frozen layers stay bit-identical."""

from pathlib import Path

import numpy as np
import pytest

from transferlab.core.errors import ParamsError
from transferlab.modeling.assembly import backbone_of, classifier, load_keras
from transferlab.modeling.fine_tuning import fine_tune, unfreeze_top
from transferlab.core.params import FineTuneParams


def _model(trained_head):
    root, params = trained_head
    return classifier(params.backbone, 32, root / params.paths.head_model_of("resnet50"), root, 0)


def weight_snapshot(layers) -> dict[str, list[np.ndarray]]:
    """Copies of every variable (trainable or not, BatchNorm moving statistics included) by layer name."""
    return {layer.name: [np.array(w.numpy()) for w in layer.weights] for layer in layers}


@pytest.mark.slow  # fine-tunes ResNet50's top for two epochs (about 10 s)
def test_only_the_unfrozen_top_changes_under_a_warm_up_and_cosine_schedule(trained_head, tmp_path):
    """One run for both: what trains (the unfrozen top, never BatchNorm) and the schedule (decayed to 0)."""
    import keras

    root, _ = trained_head
    model = _model(trained_head)
    base = backbone_of(model)
    before = weight_snapshot(base.layers)
    trained = {}

    class Snapshot(keras.callbacks.Callback):  # the trained weights, whether or not they replace the start
        def on_epoch_end(self, epoch, logs=None):
            trained.update(weight_snapshot(base.layers))

    # flip_tta off: the mirror views are test_flip_tta_is_chosen_on_validation_loss_under_auto's; here they would
    # only trace and run a second, two-view model after the training under test
    cfg = FineTuneParams(unfreeze_top=6, learning_rate=1e-3, epochs=2, schedule="cosine", warmup_epochs=1,
                         flip=False, rotation=0.0, zoom=0.0, flip_tta=False)
    result = fine_tune(model, root / "data" / "prepared", cfg, tmp_path, seed=0, verbose=0, callbacks=(Snapshot(),))
    after = trained
    trainable = set(result.trainable_layers)
    assert trainable and len(trainable) <= 6
    changed = {name for name in before if any(not np.array_equal(b, a) for b, a in zip(before[name], after[name]))}
    assert changed and changed <= trainable
    batch_norms = [layer.name for layer in base.layers if "bn" in layer.name or "BatchNorm" in type(layer).__name__]
    assert batch_norms and not changed & set(batch_norms)  # moving mean/variance and gamma/beta untouched
    assert len(result.history["val_loss"]) == 2
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)  # decayed to 0 at the last step


def test_unfreeze_count_larger_than_the_model_is_a_params_error(trained_head):
    with pytest.raises(ParamsError, match="fine_tune.unfreeze_top: 10000 is larger than"):
        unfreeze_top(backbone_of(_model(trained_head)), 10_000)


def test_batchnorm_in_the_unfrozen_top_stays_frozen(trained_head):
    base = backbone_of(_model(trained_head))
    names = unfreeze_top(base, 30)
    assert not [n for n in names if type(base.get_layer(n)).__name__ == "BatchNormalization"]
    assert any(type(layer).__name__ == "BatchNormalization" for layer in base.layers[-30:])


def test_fine_tune_stage_saves_a_safe_mode_loadable_whole_model(trained_head):
    root, _ = trained_head
    model = load_keras(root / "models" / "fine_tuned" / "model.keras")
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    assert model.predict(pixels, verbose=0).shape == (2, 3)
    assert (root / "plots" / "fine_tune" / "loss.tsv").is_file()


def _with_rotated_training_labels(prepared: Path, target: Path) -> Path:
    """A copy of the prepared data whose training labels are all wrong: every step moves away from the truth."""
    import shutil

    import tensorflow as tf

    from transferlab.data.prepared import shard_files

    shutil.copytree(prepared, target)
    for path in shard_files(target, "train"):
        examples = [tf.train.Example.FromString(record.numpy()) for record in tf.data.TFRecordDataset(str(path))]
        with tf.io.TFRecordWriter(str(path)) as writer:
            for example in examples:
                label = example.features.feature["label"].int64_list.value
                label[0] = (label[0] + 1) % 3
                writer.write(example.SerializeToString())
    return target


@pytest.mark.slow  # fine-tunes ResNet50's top for two epochs (about 10 s)
def test_the_head_only_weights_are_kept_when_fine_tuning_never_improves(trained_head, tmp_path):
    root, _ = trained_head
    prepared = _with_rotated_training_labels(root / "data" / "prepared", tmp_path / "prepared")
    model = _model(trained_head)
    start = [np.array(w) for w in model.get_weights()]
    cfg = FineTuneParams(unfreeze_top=6, learning_rate=1e-2, epochs=2, patience=2, flip=False, rotation=0.0, zoom=0.0,
                         flip_tta=False)  # the mirror views are another test's (see the test above)
    result = fine_tune(model, prepared, cfg, tmp_path / "scratch", seed=0, verbose=0)
    assert min(result.history["val_loss"]) > result.initial["val_loss"]  # it really never improved
    assert result.kept_initial and result.metrics()["kept_head_only_weights"] == 1
    assert result.metrics()["val_loss"] == result.initial["val_loss"]
    tried = result.metrics()  # what fine-tuning reached is still reported
    assert tried["val_loss_tried"] == min(result.history["val_loss"]) > tried["val_loss"]
    from transferlab.modeling.history import history_tables

    table = history_tables(result.history, {"loss": result.initial["val_loss"]})["loss"]
    assert set(table["head_only"]) == {result.initial["val_loss"]} and len(table) == len(result.history["loss"])
    for kept, original in zip(result.model.get_weights(), start):
        np.testing.assert_array_equal(kept, original)


def _at_the_edge(noise: np.ndarray) -> float:
    """A change whose mean lies 1.4 standard errors below 0: inside a 95 % interval (1.96), outside a 68 % one."""
    return -1.4 * noise.std(ddof=1) / np.sqrt(len(noise)) - noise.mean()


@pytest.mark.parametrize("change, replaced", [(-0.5, True), (0.0, False), (0.5, False), ("edge", False)],
                         ids=["clear gain", "inside the noise", "worse", "inside 95 % but not 68 %"])
def test_fine_tuned_weights_replace_the_start_only_when_better_beyond_the_noise(trained_head, tmp_path, monkeypatch,
                                                                              change, replaced):
    """The per-image validation losses decide: their mean change's 95 % interval must lie below 0. The losses are
    planted, so the epoch itself is too (the tests above train for real): only the decision is under test."""
    from transferlab.core.intervals import paired_mean_interval
    from transferlab.modeling import fine_tuning

    root, _ = trained_head
    start = np.random.default_rng(0).uniform(0.0, 2.0, 40)
    noise = np.random.default_rng(1).normal(0.0, 0.3, 40)
    if change == "edge":  # a narrower interval than 95 % would call this a gain
        change = _at_the_edge(noise)
        assert paired_mean_interval(noise + change, confidence=0.68)[1] < 0 < paired_mean_interval(noise + change)[1]
    losses = iter([start, start + noise + change])
    monkeypatch.setattr(fine_tuning, "per_image_losses", lambda model, dataset, desc="", forward=None: next(losses))
    epoch = {"loss": [0.9], "accuracy": [0.5], "val_loss": [1.0 + change], "val_accuracy": [0.5]}
    before = {"val_loss": 1.0, "val_accuracy": 0.5}
    monkeypatch.setattr(fine_tuning, "_fit_with_keras", lambda *args: (epoch, before, 1))
    model = _model(trained_head)
    # flip_tta off: the planted losses are the weights' only; `auto` would measure the mirror views a third time
    cfg = FineTuneParams(unfreeze_top=6, learning_rate=1e-3, epochs=1, flip=False, rotation=0.0, zoom=0.0,
                         flip_tta=False)
    result = fine_tune(model, root / "data" / "prepared", cfg, tmp_path, seed=0, verbose=0)
    low, high = result.loss_change
    assert result.kept_initial is not replaced and (high < 0) is replaced and low < high
    assert result.selection.rule == "beyond_noise" and result.selection.kept_head_only is not replaced
    assert f"[{low:.4g}, {high:.4g}]" in result.selection.reason
    assert result.metrics()["val_loss_change_high"] == high


def test_per_image_losses_are_each_images_cross_entropy(trained_head):
    from transferlab.data.prepared import image_dataset
    from transferlab.modeling.fine_tuning import per_image_losses
    from transferlab.modeling.outputs import Output

    root, _ = trained_head
    model = _model(trained_head)
    validation = image_dataset(root / "data" / "prepared", "validation", 4)
    losses = per_image_losses(model, validation)
    images, labels = map(np.concatenate, zip(*[(x.numpy(), y.numpy()) for x, y in validation]))
    probabilities = model.predict(images, verbose=0)
    expected = -np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1))
    assert losses.shape == labels.shape and Output.of(model).units == 3
    np.testing.assert_allclose(losses, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("setting, single, averaged, expected", [
    ("auto", 0.30, 0.25, True), ("auto", 0.25, 0.30, False), (True, None, None, True), (False, None, None, False)])
def test_flip_tta_is_chosen_on_validation_loss_under_auto(trained_head, monkeypatch, setting, single, averaged,
                                                          expected):
    from transferlab.modeling import fine_tuning
    from transferlab.modeling.assembly import has_flip_tta

    root, _ = trained_head
    measured = []

    def losses(model, dataset, desc=""):
        measured.append(has_flip_tta(model))
        return np.full(10, averaged if has_flip_tta(model) else single)

    monkeypatch.setattr(fine_tuning, "per_image_losses", losses)
    cfg = FineTuneParams(flip_tta=setting)
    choice = fine_tuning.choose_flip_tta(_model(trained_head), root / "data" / "prepared", cfg)
    assert choice.use is expected and choice.metrics()["flip_tta"] == int(expected)
    assert sorted(measured) == ([False, True] if setting == "auto" else [])  # a fixed setting measures nothing
    if setting == "auto":
        assert choice.metrics()["val_loss_flip_tta"] == pytest.approx(averaged)


def test_the_fine_tune_stage_records_its_flip_tta_choice_and_saves_the_model_that_way(trained_head):
    import json

    from transferlab.modeling.assembly import has_flip_tta

    root, _ = trained_head
    metrics = json.loads((root / "metrics" / "fine_tune.json").read_text())
    assert metrics["flip_tta"] == int(has_flip_tta(load_keras(root / "models" / "fine_tuned" / "model.keras")))
    assert metrics["val_loss_single_view"] > 0 and metrics["val_loss_flip_tta"] > 0
    assert metrics["flip_tta"] == int(metrics["val_loss_flip_tta"] < metrics["val_loss_single_view"])


@pytest.mark.parametrize("schedule, warmup, expected", [
    ("constant", 1, [0.0, 5e-5, 1e-4, 1e-4, 1e-4]),
    ("cosine", 0, [1e-4, 9.62e-5, 8.54e-5, 5e-5, 0.0]),
    ("cosine", 1, [0.0, 5e-5, 1e-4, 7.5e-5, 0.0])])
def test_learning_rate_warms_up_then_stays_or_decays_by_the_last_epoch(schedule, warmup, expected):
    from transferlab.modeling.fine_tuning import learning_rate

    rate = learning_rate(FineTuneParams(learning_rate=1e-4, epochs=4, schedule=schedule, warmup_epochs=warmup), 10)
    steps = [0, 5, 10, 20, 40]  # 10 steps an epoch
    np.testing.assert_allclose([float(rate(step)) for step in steps], expected, rtol=0.01, atol=1e-9)


def test_a_constant_rate_without_warm_up_is_the_plain_number():
    from transferlab.modeling.fine_tuning import learning_rate

    assert learning_rate(FineTuneParams(learning_rate=3e-5), 10) == 3e-5
