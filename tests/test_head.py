import numpy as np
import pytest

from transferlab.core.errors import ParamsError
from transferlab.modeling.features import SplitFeatures
from transferlab.modeling.head import accuracy, build_head, train_head
from transferlab.core.params import HeadParams


def _blobs(n, classes, width=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    centers = np.random.default_rng(99).normal(0, 3, (classes, width))  # the same classes in every split
    return SplitFeatures((centers[labels] + rng.normal(0, 1, (n, width))).astype(np.float32), labels,
                         np.array([str(i) for i in range(n)]))


def test_two_classes_get_a_sigmoid_unit_more_get_softmax():
    assert build_head(HeadParams(), 8, 2).output_shape == (None, 1)
    assert build_head(HeadParams(), 8, 5).output_shape == (None, 5)
    assert build_head(HeadParams(hidden_units=4), 8, 5).get_layer("hidden").units == 4
    with pytest.raises(ParamsError, match="head.activation"):
        build_head(HeadParams(activation="sigmoid"), 8, 3)


@pytest.mark.parametrize("classes", [2, 4])
def test_head_learns_separable_features(classes):
    result = train_head(HeadParams(epochs=50, learning_rate=0.01), _blobs(200, classes), _blobs(80, classes, seed=1), classes,
                        seed=0, verbose=0)
    assert accuracy(result.model, _blobs(80, classes, seed=2)) >= 0.9


def test_early_stopping_keeps_the_best_epoch_when_validation_stops_improving():
    validation = _blobs(80, 3, seed=1)
    noise = SplitFeatures(validation.features, np.random.default_rng(5).permutation(validation.labels),
                          validation.keys)  # labels unrelated to features: validation loss must rise
    result = train_head(HeadParams(epochs=300, patience=3, learning_rate=0.01), _blobs(200, 3), noise, 3,
                        seed=0, verbose=0)
    assert result.metrics["epochs_run"] < 300
    assert result.best_epoch == int(np.argmin(result.history["val_loss"])) + 1
    assert result.metrics["epochs_run"] == result.best_epoch + 3


def test_l2_regularizes_the_output_kernel_only_when_asked():
    from transferlab.core.params import Params

    plain, regularized = build_head(HeadParams(), 8, 3), build_head(HeadParams(), 8, 3, l2=0.01)
    assert plain.get_layer("logits").kernel_regularizer is None
    assert regularized.get_layer("logits").kernel_regularizer.get_config()["l2"] == pytest.approx(0.01)
    small = train_head(HeadParams(epochs=100, learning_rate=0.05), _blobs(120, 3), _blobs(30, 3, seed=1), 3, seed=0, verbose=0, l2=0.1)
    large = train_head(HeadParams(epochs=100, learning_rate=0.05), _blobs(120, 3), _blobs(30, 3, seed=1), 3, seed=0, verbose=0, l2=0.0)
    norm = lambda result: np.linalg.norm(result.model.get_layer("logits").kernel.numpy())  # noqa: E731
    assert norm(small) < 0.7 * norm(large)
    with pytest.raises(ValueError, match="outside 0 to 10"):
        Params.model_validate({"head": {"l2": -1}})
