"""A real MLflow registry (sqlite): log, register, gate, and load back through models:/<name>@champion."""

import os
from pathlib import Path

import mlflow
import numpy as np
import pytest

from transferlab.tracking.runs import stage_run
from transferlab.tracking.store import tracking_uri
from transferlab.evaluation.predict import load_model
from transferlab.core.params import EvaluateParams
from transferlab.tracking.promotion import GateRules, register_and_gate

RULES = GateRules.of(EvaluateParams())  # params.yaml's gate: min 0.8, within 0.01, no class down 0.1 beyond noise


def _model(seed):
    import keras

    from transferlab.modeling.assembly import pixel_scaling

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = pixel_scaling("mobilenet_v2", inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def _log_and_gate(tmp_path, model, accuracy, test_images=None, data="d41d8cd9", counts=None,
                  classes='["cat", "dog"]'):
    with stage_run("evaluate", "registry-test", tmp_path, {}) as tracker:
        uri = tracker.log_keras_model(model, "model", np.zeros((1, 8, 8, 3), np.float32))
        return register_and_gate(uri, "pets", accuracy, RULES, {"classes": classes, "data.prepared.md5": data},
                                 test_images, counts)


def test_champion_moves_only_through_the_gate_and_loads_back(tmp_path, monkeypatch):
    elsewhere = tmp_path / "cwd"  # MLflow's own default would put artifacts in ./mlruns: the checkout
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    first, second = _model(0), _model(1)
    version, decision = _log_and_gate(tmp_path, first, 0.95)
    assert (version, decision.alias) == ("1", "champion")
    version, decision = _log_and_gate(tmp_path, second, 0.90)
    assert (version, decision.alias) == ("2", "challenger")
    assert "below the champion's 0.9500" in decision.reason

    pixels = np.random.default_rng(0).uniform(0, 255, (4, 8, 8, 3)).astype(np.float32)
    loaded = load_model("models:/pets@champion")
    assert loaded.classes == ["cat", "dog"]
    np.testing.assert_allclose(loaded.model.predict(pixels, verbose=0), first.predict(pixels, verbose=0), rtol=1e-6)
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("pets", "challenger").version) == "2"
    assert client.get_model_version("pets", "2").tags["gate.reason"] == decision.reason
    assert list(elsewhere.iterdir()) == []  # nothing written where the command happened to run
    database = Path(os.environ["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///"))
    location = mlflow.get_experiment_by_name("registry-test").artifact_location
    assert location == (database.resolve().parent / "mlartifacts").as_uri()  # artifacts beside their database


def test_unknown_registered_model_is_a_one_line_error(tmp_path):
    from transferlab.core.errors import UserError

    mlflow.set_tracking_uri(tracking_uri(tmp_path))
    with pytest.raises(UserError, match="cannot load models:/nothing@champion"):
        load_model("models:/nothing@champion")


def test_the_gate_refuses_a_model_with_other_classes(tmp_path):
    """Issue 14, finding 8: a 3-class model was compared with a 2-class champion by accuracy alone."""
    from transferlab.core.errors import ParamsError

    _log_and_gate(tmp_path, _model(0), 0.95)
    with stage_run("evaluate", "registry-test", tmp_path, {}) as tracker:
        uri = tracker.log_keras_model(_model(1), "model", np.zeros((1, 8, 8, 3), np.float32))
        with pytest.raises(ParamsError, match=r"evaluate.registered_model: the champion of 'pets' \(version 1\) "
                                              r"classifies 2 classes \['cat', 'dog'\], this model 3"):
            register_and_gate(uri, "pets", 0.99, RULES, {"classes": '["cat", "dog", "bird"]'})
    assert [str(v.version) for v in mlflow.MlflowClient().search_model_versions("name = 'pets'")] == ["1"]


def test_an_interrupted_registration_is_deleted_by_the_next_one(tmp_path):
    """Issue 14, finding 9: a kill between "version created" and "alias set" left a version behind forever."""
    from transferlab.tracking.promotion import GATE_STATUS, PENDING

    with stage_run("evaluate", "registry-test", tmp_path, {}) as tracker:
        uri = tracker.log_keras_model(_model(0), "model", np.zeros((1, 8, 8, 3), np.float32))
        mlflow.register_model(uri, "pets", tags={GATE_STATUS: PENDING})  # killed right after this
    mlflow.register_model(uri, "pets")  # registered by hand, not by the gate: never touched
    version, decision = _log_and_gate(tmp_path, _model(1), 0.95)
    client = mlflow.MlflowClient()
    assert sorted(str(v.version) for v in client.search_model_versions("name = 'pets'")) == ["2", "3"]
    assert (version, decision.alias) == ("3", "champion")
    assert client.get_model_version("pets", "3").tags[GATE_STATUS] == "done"


def test_predict_refuses_a_class_list_that_does_not_fit_the_model(tmp_path):
    """Issue 14, finding 8: a model whose output width disagrees with classes.json predicted with wrong names."""
    import json

    from transferlab.core.errors import UserError

    model = _model(0)
    model.save(tmp_path / "model.keras")
    (tmp_path / "classes.json").write_text(json.dumps([{"index": i, "name": n} for i, n in enumerate("abc")]))
    with pytest.raises(UserError, match="names 3 classes but the model predicts 2"):
        load_model(str(tmp_path / "model.keras"))


def test_the_gate_says_when_a_difference_is_inside_the_noise_and_when_test_data_differ(tmp_path):
    _log_and_gate(tmp_path, _model(0), 0.95, 298)
    _, decision = _log_and_gate(tmp_path, _model(1), 0.96, 298)  # the head vs probe: 3 images of 298
    assert decision.alias == "champion"
    assert "the difference +0.0100 (95 % interval -0.0" in decision.reason and "inside the noise of 298" in decision.reason
    assert mlflow.MlflowClient().get_model_version("pets", "2").tags["test_images"] == "298"
    _, decision = _log_and_gate(tmp_path, _model(2), 0.90, 5000)  # a regression big enough to be real
    assert decision.alias == "challenger" and "outside the noise of 5000" in decision.reason
    _, decision = _log_and_gate(tmp_path, _model(3), 0.97, 298, data="0cc175b1")
    assert "measured on other data than the champion's" in decision.reason and "not comparable" in decision.reason


def test_a_challenger_better_overall_but_worse_beyond_the_noise_on_one_class_is_refused_naming_it(tmp_path):
    """TFMA-style slicing (issue 30): the champion's per-class counts come back from the run that registered it."""
    classes = '["cat", "dog", "fox"]'
    champion = {"cat": [180, 200], "dog": [180, 200], "fox": [30, 40]}  # 390/440
    _log_and_gate(tmp_path, _model(0), 390 / 440, 440, counts=champion, classes=classes)
    better_but_not_on_foxes = {"cat": [200, 200], "dog": [200, 200], "fox": [15, 40]}  # 415/440
    version, decision = _log_and_gate(tmp_path, _model(1), 415 / 440, 440, counts=better_but_not_on_foxes,
                                      classes=classes)
    assert decision.alias == "challenger"
    assert decision.reason.startswith("recall on class 'fox' fell from the champion's 0.750 to 0.375 (40 test images)")
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("pets", "champion").version) == "1"
    assert client.get_model_version("pets", version).tags["gate.reason"] == decision.reason
    # A 0.25 drop on a class of 4 test images is noise: promoted, and the new champion records its predecessor.
    small = {"cat": [200, 200], "dog": [200, 200], "fox": [2, 4]}
    version, decision = _log_and_gate(tmp_path, _model(2), 402 / 404, 404, counts=small, classes=classes)
    assert decision.alias == "champion", decision.reason
    assert client.get_model_version("pets", version).tags["gate.previous_champion"] == "1"


def test_a_roll_back_returns_champion_to_the_version_replaced_and_never_undoes_a_later_promotion(tmp_path):
    from transferlab.tracking.promotion import roll_back

    client = mlflow.MlflowClient()
    _log_and_gate(tmp_path, _model(0), 0.95)
    _log_and_gate(tmp_path, _model(1), 0.96)
    assert roll_back(client, "pets", "2", "the served model did not start") == "1"
    assert str(client.get_model_version_by_alias("pets", "champion").version) == "1"
    # a release killed mid-rollback runs again: the second rollback finds champion moved and moves nothing
    assert roll_back(client, "pets", "2", "the served model did not start") == "1"
    assert str(client.get_model_version_by_alias("pets", "champion").version) == "1"
    tags = client.get_model_version("pets", "2").tags
    assert (tags["release.reason"], tags["gate.alias"]) == ("the served model did not start", "rolled_back")
    _log_and_gate(tmp_path, _model(2), 0.97)  # version 3, champion after 1
    assert roll_back(client, "pets", "2", "late") == "3"  # 2 is not champion: nothing moves
    assert str(client.get_model_version_by_alias("pets", "champion").version) == "3"


def test_rolling_back_the_first_champion_leaves_no_champion(tmp_path):
    from mlflow.exceptions import MlflowException

    from transferlab.tracking.promotion import roll_back

    client = mlflow.MlflowClient()
    _log_and_gate(tmp_path, _model(0), 0.95)
    assert roll_back(client, "pets", "1", "the served model did not start") is None
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias("pets", "champion")


def test_a_test_split_too_small_to_judge_promotes_nothing(tmp_path):
    """Issue 31: 6 test images made a champion "inside the noise"; below evaluate.min_test_images nothing moves."""
    version, decision = _log_and_gate(tmp_path, _model(0), 1.0, 6)
    assert decision.alias == "challenger"
    assert decision.reason.startswith("only 6 test images, fewer than evaluate.min_test_images 30: too few")
    assert _log_and_gate(tmp_path, _model(1), 1.0, 30)[1].alias == "champion"


def test_a_missing_champion_names_the_newest_version_its_alias_and_why(tmp_path):
    """Issue 32: `make serve-model` said only "alias champion not found" after a run below the gate."""
    from transferlab.core.errors import UserError
    from transferlab.serving.server import check_alias

    with pytest.raises(UserError, match="no version of 'pets' is registered; run the pipeline"):
        check_alias("models:/pets@champion")
    _log_and_gate(tmp_path, _model(0), 0.615, 100)
    with pytest.raises(UserError) as caught:
        check_alias("models:/pets@champion")
    assert str(caught.value) == (
        "--model: models:/pets@champion: no version of 'pets' is champion. The newest, version 1, is challenger: "
        "test accuracy 0.6150 is below evaluate.min_accuracy 0.8. To use it anyway: --model models:/pets/1")
    check_alias("models:/pets@challenger")  # an alias that points somewhere passes


def test_the_same_weights_are_not_registered_twice_and_the_version_is_named(tmp_path):
    """Issue 32: rerunning with unchanged weights registered the same model as new versions."""
    from transferlab.serving.registration import weights_digest
    from transferlab.tracking.promotion import WEIGHTS_TAG

    model = _model(0)
    assert weights_digest(model) == weights_digest(_model(0)) != weights_digest(_model(1))

    def gate(candidate):
        with stage_run("evaluate", "registry-test", tmp_path, {}) as tracker:
            uri = tracker.log_keras_model(candidate, "model", np.zeros((1, 8, 8, 3), np.float32))
            return register_and_gate(uri, "pets", 0.95, RULES, {"classes": '["cat", "dog"]',
                                                               WEIGHTS_TAG: weights_digest(candidate)}, 100)

    assert gate(model)[0] == "1"
    version, decision = gate(_model(0))
    assert (version, decision.alias, decision.new) == ("1", "champion", False)
    assert decision.reason == "the same weights as version 1 (champion): not registered again"
    assert gate(_model(1))[0] == "2"
    assert len(mlflow.MlflowClient().search_model_versions("name = 'pets'")) == 2


def _logged(tmp_path, model) -> str:
    with stage_run("evaluate", "registry-test", tmp_path, {}) as tracker:
        return tracker.log_keras_model(model, "model", np.zeros((1, 8, 8, 3), np.float32))


def test_two_gates_at_once_keep_both_versions_and_the_second_judges_against_the_firsts_outcome(tmp_path,
                                                                                                monkeypatch):
    """Issue 42: one gate's clean-up of "interrupted" registrations deleted the other's pending version, which
    then failed with "version not found". The first gate is held just after registering its version while the
    second runs until it finishes or waits for its turn; then both go on."""
    import threading

    from transferlab.tracking import gate_turn

    first_uri, second_uri = _logged(tmp_path, _model(0)), _logged(tmp_path, _model(1))
    tags = {"classes": '["cat", "dog"]'}
    results, failures, second_stopped = {}, [], threading.Event()
    real_register, real_pause = mlflow.register_model, gate_turn._pause

    def second_gate():
        try:
            results["second"] = register_and_gate(second_uri, "pets", 0.95, RULES, tags, 100)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)
        finally:
            second_stopped.set()

    def register_then_let_the_second_in(*args, **kwargs):
        version = real_register(*args, **kwargs)
        if threading.current_thread() is threading.main_thread():
            second = threading.Thread(target=second_gate)
            second.start()
            second_stopped.wait()  # set when the second gate ends, or pauses because it waits for this one
            results["thread"] = second
        return version

    def pause():
        second_stopped.set()
        real_pause()

    monkeypatch.setattr(mlflow, "register_model", register_then_let_the_second_in)
    monkeypatch.setattr(gate_turn, "_pause", pause)
    results["first"] = register_and_gate(first_uri, "pets", 0.90, RULES, tags, 100)
    results["thread"].join()
    assert failures == []
    (first, first_decision), (second, second_decision) = results["first"], results["second"]
    assert (first, first_decision.alias, first_decision.previous) == ("1", "champion", None)
    assert (second, second_decision.alias, second_decision.previous) == ("2", "champion", "1")
    client = mlflow.MlflowClient()
    versions = {str(v.version): v.tags for v in client.search_model_versions("name = 'pets'")}
    assert sorted(versions) == ["1", "2"] and {tags["gate.status"] for tags in versions.values()} == {"done"}
    assert str(client.get_model_version_by_alias("pets", "champion").version) == "2"


def test_only_the_pending_versions_whose_gate_process_is_gone_are_deleted(tmp_path):
    import subprocess
    import sys

    from transferlab.tracking.gate_turn import GATE_STATUS, OWNER_TAG, PENDING, discard_interrupted
    from transferlab.tracking.processes import process_identity

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    uri = _logged(tmp_path, _model(0))
    owners = {"1": process_identity(int(ended.stdout)), "2": process_identity(), "3": "another-host:1:1"}
    for owner in owners.values():
        mlflow.register_model(uri, "pets", tags={GATE_STATUS: PENDING, OWNER_TAG: owner})
    assert discard_interrupted(mlflow.MlflowClient(), "pets") == ["1"]
    assert sorted(str(v.version) for v in mlflow.MlflowClient().search_model_versions("name = 'pets'")) == ["2", "3"]
