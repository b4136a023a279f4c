import numpy as np
import pytest

from transferlab.core.errors import ParamsError
from transferlab.modeling.features import SplitFeatures
from transferlab.modeling.head import accuracy, build_head, train_head
from transferlab.core.params import HeadParams


def unregularized(**settings) -> HeadParams:
    """A head under no L2: these tests check the head's own mechanics, with no probe to resolve `head.l2: probe`."""
    return HeadParams(l2=0.0, **settings)


def test_an_unresolved_probe_l2_is_refused_and_resolved_writes_the_number_into_the_params():
    from transferlab.modeling.head import resolved

    with pytest.raises(ValueError, match="resolve it to a number first"):
        build_head(HeadParams(), 8, 2)
    assert resolved(HeadParams(), 0.25).l2 == 0.25 and resolved(HeadParams(l2=0.5), 0.25).l2 == 0.5


def _blobs(n, classes, width=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    centers = np.random.default_rng(99).normal(0, 3, (classes, width))  # the same classes in every split
    return SplitFeatures((centers[labels] + rng.normal(0, 1, (n, width))).astype(np.float32), labels,
                         np.array([str(i) for i in range(n)]))


def test_two_classes_get_a_sigmoid_unit_more_get_softmax():
    assert build_head(unregularized(), 8, 2).output_shape == (None, 1)
    assert build_head(unregularized(), 8, 5).output_shape == (None, 5)
    assert build_head(unregularized(hidden_units=4), 8, 5).get_layer("hidden").units == 4
    with pytest.raises(ParamsError, match="head.activation"):
        build_head(unregularized(activation="sigmoid"), 8, 3)


@pytest.mark.parametrize("classes", [2, 4])
def test_head_learns_separable_features(classes):
    result = train_head(unregularized(epochs=50, learning_rate=0.01), _blobs(200, classes), _blobs(80, classes, seed=1), classes,
                        seed=0, verbose=0)
    assert accuracy(result.model, _blobs(80, classes, seed=2)) >= 0.9


def test_early_stopping_keeps_the_best_epoch_when_validation_stops_improving():
    validation = _blobs(80, 3, seed=1)
    noise = SplitFeatures(validation.features, np.random.default_rng(5).permutation(validation.labels),
                          validation.keys)  # labels unrelated to features: validation loss must rise
    result = train_head(unregularized(epochs=300, patience=3, learning_rate=0.01), _blobs(200, 3), noise, 3,
                        seed=0, verbose=0)
    assert result.metrics["epochs_run"] < 300
    assert result.best_epoch == int(np.argmin(result.history["val_loss"])) + 1
    assert result.metrics["epochs_run"] == result.best_epoch + 3


def test_l2_regularizes_the_output_kernel_only_when_asked():
    from transferlab.core.params import Params

    plain, regularized = build_head(unregularized(), 8, 3), build_head(HeadParams(l2=0.01), 8, 3)
    assert plain.get_layer("logits").kernel_regularizer is None
    assert regularized.get_layer("logits").kernel_regularizer.get_config()["l2"] == pytest.approx(0.01)
    small = train_head(HeadParams(epochs=30, learning_rate=0.05, l2=0.1), _blobs(120, 3), _blobs(30, 3, seed=1), 3, seed=0, verbose=0)
    large = train_head(HeadParams(epochs=30, learning_rate=0.05, l2=0.0), _blobs(120, 3), _blobs(30, 3, seed=1), 3, seed=0, verbose=0)
    norm = lambda result: np.linalg.norm(result.model.get_layer("logits").kernel.numpy())  # noqa: E731
    assert norm(small) < 0.7 * norm(large)
    with pytest.raises(ValueError, match="outside 0 to 10"):
        Params.model_validate({"head": {"l2": -1}})


def test_a_feature_constant_in_training_keeps_its_units_as_in_the_probes_scaler():
    """A ReLU feature that is 0 on every training image and 0.5 on a validation image stays 0.5 after
    standardization (sklearn's StandardScaler), instead of 0.5 / 1e-7 (Keras' adapt)."""
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    train = np.c_[rng.normal(2.0, 3.0, (40, 3)), np.zeros(40)].astype(np.float32)
    unseen = np.array([[2.0, 2.0, 2.0, 0.5]], np.float32)
    model = build_head(unregularized(), 4, 3, train)
    standardized = model.get_layer("standardize")(unseen).numpy()
    np.testing.assert_allclose(standardized, StandardScaler().fit(train).transform(unseen), rtol=1e-4, atol=1e-5)


def test_several_steps_a_call_divide_the_epoch_and_one_across_replicas():
    from types import SimpleNamespace

    from transferlab.modeling.head import steps_per_execution

    one, two = SimpleNamespace(num_replicas_in_sync=1), SimpleNamespace(num_replicas_in_sync=2)
    assert [steps_per_execution(steps, one) for steps in (1, 15, 16, 34, 37, 64, 96)] == [1, 15, 16, 17, 1, 32, 32]
    assert steps_per_execution(16, two) == 1 and steps_per_execution(0, one) == 1


def test_each_epoch_sees_every_example_once_in_its_own_order_the_same_run_to_run():
    from transferlab.modeling.head import input_pipelines

    features, labels = np.arange(10, dtype=np.float32)[:, None], np.arange(10)

    def epochs():
        examples, validation = input_pipelines((features, labels), (features[:3], labels[:3]), 4, 7, 3)
        batches = [rows.numpy().tolist() for _, rows in examples]
        assert [len(batch) for batch in batches] == [4, 4, 2] * 3 and len(list(validation)) == 1
        return [sum(batches[start:start + 3], []) for start in (0, 3, 6)]

    orders = epochs()
    assert all(sorted(order) == list(range(10)) for order in orders)
    assert len({tuple(order) for order in orders}) == 3 and orders == epochs()
