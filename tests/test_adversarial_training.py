"""Adversarial fine-tuning: PGD images within the budget replace part of each batch; what is saved stays plain."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import run_stages
from tests.test_finetune import _model
from tests.test_gradcam import square_task, tiny_classifier
from transferlab.adversarial.training import AdversarialFitting, adversarial_fitting
from transferlab.core.params import AdversarialTrainingParams, FineTuneParams
from transferlab.modeling.assembly import load_keras
from transferlab.modeling.fine_tuning import fine_tune
from transferlab.modeling.outputs import Output

EPSILON = 8.0


def test_a_fraction_of_the_batch_is_replaced_by_attacks_within_the_budget():
    model = tiny_classifier(3)
    images, labels, _ = square_task(3, 8, seed=0)
    wrapper = AdversarialFitting(model, AdversarialTrainingParams(epsilon=EPSILON, steps=3, fraction=0.5), seed=0)
    mixed = wrapper.adversarial_batch(tf.constant(images), tf.constant(labels)).numpy()
    delta = np.abs(mixed - images).reshape(8, -1).max(axis=1)
    assert (delta[:4] > 0).all() and (delta[:4] <= EPSILON + 1e-3).all()  # round(0.5 * 8) attacked
    assert (delta[4:] == 0).all() and mixed.min() >= 0 and mixed.max() <= 255
    loss = Output.of(model).loss(reduction=None)
    before, after = loss(labels[:4], model(images[:4])), loss(labels[:4], model(mixed[:4]))
    assert float(np.mean(after)) > float(np.mean(before))  # each replaced image is an attack, not noise


def test_epsilon_zero_means_plain_fitting():
    assert adversarial_fitting(AdversarialTrainingParams(), 0) is None
    assert adversarial_fitting(AdversarialTrainingParams(epsilon=1.0), 0) is not None


@pytest.mark.slow  # fine-tunes ResNet50's top on PGD attacks (about 13 s)
def test_adversarial_fine_tuning_trains_the_plain_classifier(trained_head, tmp_path):
    root, _ = trained_head
    model = _model(trained_head)
    before = [w.copy() for w in model.get_weights()]
    # flip_tta off: the mirror views are tests/test_finetune.py's; here they would only trace a second model
    cfg = FineTuneParams(unfreeze_top=6, learning_rate=1e-3, epochs=1, patience=5, flip=False, rotation=0.0, zoom=0.0,
                         adversarial=AdversarialTrainingParams(epsilon=EPSILON, steps=2, fraction=0.5), flip_tta=False)
    result = fine_tune(model, root / "data" / "prepared", cfg, tmp_path, seed=0, verbose=0,
                       fitting=adversarial_fitting(cfg.adversarial, 0))
    assert result.model is model and not isinstance(model, AdversarialFitting)  # the classifier, not the wrapper
    assert len(result.history["val_loss"]) == 1 and np.isfinite(result.history["loss"]).all()
    if not result.kept_initial:
        assert any(not np.array_equal(b, a) for b, a in zip(before, model.get_weights()))


@pytest.mark.slow  # runs the fine_tune stage
def test_the_stage_saves_a_model_that_loads_without_the_wrapper(trained_head, tmp_path):
    import shutil

    root = tmp_path / "ws"  # a copy: the shared build stays as the other tests read it
    shutil.copytree(trained_head[0], root)
    run_stages(root, {"fine_tune.epochs": 1, "fine_tune.adversarial.epsilon": 2.0, "fine_tune.adversarial.steps": 1},
               ["fine_tune"])
    path = root / "models" / "fine_tuned" / "model.keras"
    import zipfile

    config = zipfile.ZipFile(path).read("config.json").decode()
    assert "AdversarialFitting" not in config and "adversarial_fitting" not in config
    assert load_keras(path).predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0).shape == (1, 3)


def test_params_reject_a_fraction_of_zero():
    with pytest.raises(ValueError):
        AdversarialTrainingParams(epsilon=1.0, fraction=0.0)
