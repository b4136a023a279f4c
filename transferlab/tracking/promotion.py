"""The MLflow registry promotion gate: `champion` moves only for a model that is good enough and no worse."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace

import mlflow
from mlflow.exceptions import MlflowException

from transferlab.core.errors import ParamsError
from transferlab.core.intervals import difference_interval
from transferlab.core.wording import plural
from transferlab.tracking import class_gate, gate_turn
from transferlab.tracking.gate_turn import DONE, GATE_STATUS, PENDING
from transferlab.tracking.tracker import Tracker

log = logging.getLogger("transferlab.registry")

CHAMPION, CHALLENGER = "champion", "challenger"
ACCURACY_TAG = "test_accuracy"
COUNT_TAG = "test_images"
TEST_DATA_TAG = "data.prepared.md5"  # the prepared dataset (test split included) the accuracy was measured on
PREVIOUS_TAG = "gate.previous_champion"  # the version a release rollback returns `champion` to
WEIGHTS_TAG = "model.weights_sha256"  # a version with these weights exists: it is named, not registered again


@dataclass(frozen=True)
class Decision:
    alias: str
    reason: str
    previous: str | None = None  # the champion this version replaced, when it became champion
    new: bool = True  # False: the same weights were registered before, and that version is named


@dataclass(frozen=True)
class GateRules:
    """What a new version must show to become champion (the evaluate section of params carries the same keys)."""

    min_accuracy: float
    max_regression: float
    max_class_regression: float | None = None
    min_class_recall: float | None = None
    min_test_images: int = 0

    @classmethod
    def of(cls, cfg) -> GateRules:
        return cls(cfg.min_accuracy, cfg.max_regression, cfg.max_class_regression, cfg.min_class_recall,
                   cfg.min_test_images)


def too_few(test_images: int | None, minimum: int) -> Decision | None:
    """A test split too small to tell a champion from noise judges nothing (6 images: a 95 % interval of ±0.3)."""
    if test_images is None or test_images >= minimum:
        return None
    return Decision(CHALLENGER, f"only {test_images} test images, fewer than evaluate.min_test_images {minimum}: "
                                f"too few to judge a champion")


def decide(accuracy: float, champion_accuracy: float | None, min_accuracy: float, max_regression: float) -> Decision:
    if accuracy < min_accuracy:
        return Decision(CHALLENGER, f"test accuracy {accuracy:.4f} is below evaluate.min_accuracy {min_accuracy}")
    if champion_accuracy is None:
        return Decision(CHAMPION, f"test accuracy {accuracy:.4f} >= {min_accuracy} and there is no champion yet")
    if accuracy < champion_accuracy - max_regression:
        return Decision(CHALLENGER, f"test accuracy {accuracy:.4f} is more than {max_regression} below the "
                                    f"champion's {champion_accuracy:.4f}")
    return Decision(CHAMPION, f"test accuracy {accuracy:.4f} >= {min_accuracy} and within {max_regression} of "
                              f"the champion's {champion_accuracy:.4f}")


def check_same_classes(client, name: str, classes: list[str]) -> None:
    """The gate compares accuracies of models that answer the same question, or refuses with one line."""
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return
    theirs = json.loads(champion.tags.get("classes", "null"))
    if theirs is not None and theirs != classes:
        raise ParamsError(f"evaluate.registered_model: the champion of {name!r} (version {champion.version}) "
                          f"classifies {plural(len(theirs), 'class')} {_short(theirs)}, this model {len(classes)} "
                          f"{_short(classes)}; their accuracies are not comparable: register under a new name")


def _short(names: list[str]) -> str:
    return str(names) if len(names) <= 6 else f"[{', '.join(map(repr, names[:5]))}, ...]"


def same_weights(client, name: str, digest: str | None):
    """The newest version registered and gated with these weights, if any (a pending one is another gate's)."""
    if not digest:
        return None
    found = [version for version in client.search_model_versions(f"name = '{name}' and tags.`{WEIGHTS_TAG}` = "
                                                                 f"'{digest}'")
             if version.tags.get(GATE_STATUS) != PENDING]
    return max(found, key=lambda version: int(version.version)) if found else None


def _named(client, name: str, digest: str | None) -> tuple[str, Decision] | None:
    """The version that already holds these weights, named instead of registering them again."""
    if same := same_weights(client, name, digest):
        alias = same.tags.get("gate.alias", "no alias")
        return str(same.version), Decision(alias, f"the same weights as version {same.version} ({alias}): not "
                                                  f"registered again", new=False)
    return None


def alias_problem(client, name: str, alias: str) -> str | None:
    """None when `alias` points at a version of `name`; else what to tell the user instead of MLflow's "alias not
    found": the newest version, its alias and the gate's reason, and how to use it anyway."""
    try:
        client.get_model_version_by_alias(name, alias)
        return None
    except MlflowException:
        versions = client.search_model_versions(f"name = '{name}'")
    if not versions:
        return f"no version of {name!r} is registered; run the pipeline (its evaluate stage registers the model)"
    newest = max(versions, key=lambda version: int(version.version))
    return (f"no version of {name!r} is {alias}. The newest, version {newest.version}, is "
            f"{newest.tags.get('gate.alias', 'not gated')}: {newest.tags.get('gate.reason', 'no reason recorded')}. "
            f"To use it anyway: --model models:/{name}/{newest.version}")


def champion_version(client, name: str):
    """The version `champion` points at; None when there is none."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def noise_note(accuracy: float, test_images: int | None, tags: dict[str, str], champion: dict[str, str]) -> str:
    """Whether the challenger-champion difference is more than test-set noise, or why that cannot be said."""
    if ACCURACY_TAG not in champion:
        return ""
    theirs, data, their_data = float(champion[ACCURACY_TAG]), tags.get(TEST_DATA_TAG), champion.get(TEST_DATA_TAG)
    if data and their_data and data != their_data:
        return (f"; measured on other data than the champion's ({TEST_DATA_TAG} {data[:8]} vs {their_data[:8]}): "
                "the two accuracies are not comparable")
    if not test_images or not champion.get(COUNT_TAG):
        return "; the champion's test size is not recorded: no interval for the difference"
    low, high = difference_interval(accuracy, test_images, theirs, int(champion[COUNT_TAG]))
    where = "inside the noise" if low <= 0 <= high else "outside the noise"
    return (f"; the difference {accuracy - theirs:+.4f} (95 % interval {low:+.4f} to {high:+.4f}) is {where} of "
            f"{test_images} test images")


def register_and_gate(model_uri: str, name: str, accuracy: float, rules: GateRules, tags: dict[str, str],
                      test_images: int | None = None,
                      counts: dict[str, list[int]] | None = None) -> tuple[str, Decision]:
    """Register the model as a new version, then point `champion` or `challenger` at it; the reason says whether
    the difference from the champion is more than the noise of `test_images` test images. `counts` ([right, test
    images] per class) is logged to the active run for the next gate and checked against the champion's.

    Gates of one registered model take turns (gate_turn): the version is registered pending first, and judged
    once every gate registered before it has finished, against the champion that gate left."""
    client = mlflow.MlflowClient()
    check_same_classes(client, name, json.loads(tags["classes"]))
    gate_turn.discard_interrupted(client, name)
    if named := _named(client, name, tags.get(WEIGHTS_TAG)):
        return named
    if counts is not None:
        mlflow.log_dict(counts, class_gate.ARTIFACT)
    measured = {ACCURACY_TAG: str(accuracy), **({COUNT_TAG: str(test_images)} if test_images else {})}
    version = gate_turn.register_pending(model_uri, name, {**tags, **measured})
    try:
        gate_turn.wait_for_turn(client, name, version)
        check_same_classes(client, name, json.loads(tags["classes"]))
        if named := _named(client, name, tags.get(WEIGHTS_TAG)):  # a gate before ours registered them
            client.delete_model_version(name, version.version)
            return named
        decision = _judge(client, name, accuracy, rules, tags, test_images, counts)
        for key, value in {"gate.reason": decision.reason, "gate.alias": decision.alias,
                           **({PREVIOUS_TAG: decision.previous} if decision.previous else {})}.items():
            client.set_model_version_tag(name, version.version, key, value)
        client.set_registered_model_alias(name, decision.alias, version.version)
    except BaseException:  # before the alias moved: nothing refers to the version yet
        _withdraw(client, name, version.version)
        raise
    client.set_model_version_tag(name, version.version, GATE_STATUS, DONE)
    return str(version.version), decision


def _judge(client, name: str, accuracy: float, rules: GateRules, tags: dict[str, str], test_images: int | None,
           counts: dict[str, list[int]] | None) -> Decision:
    """The decision against the champion now: overall, then per class, with the version it would replace."""
    previous = champion_version(client, name)
    champion = dict(previous.tags) if previous else {}
    current = float(champion[ACCURACY_TAG]) if ACCURACY_TAG in champion else None
    decision = too_few(test_images, rules.min_test_images) or decide(accuracy, current, rules.min_accuracy,
                                                                      rules.max_regression)
    decision = Decision(decision.alias, decision.reason + noise_note(accuracy, test_images, tags, champion))
    if counts is not None:
        decision = _per_class(decision, counts, client, previous, rules)
    if previous and decision.alias == CHAMPION:
        decision = replace(decision, previous=str(previous.version))
    return decision


def _withdraw(client, name: str, version: str) -> None:
    """Delete this gate's pending version after a failure, so that no later gate waits for it."""
    try:
        client.delete_model_version(name, version)
    except MlflowException as exc:  # the store stopped answering: its owner's end lets the next gate delete it
        log.warning("registered model %s version %s: its gate failed and the version could not be deleted (%s)",
                    name, version, exc)


def _per_class(decision: Decision, counts, client, previous, rules: GateRules) -> Decision:
    """An overall champion is still refused when one class fails; the reason then names that class."""
    if decision.alias != CHAMPION:
        return decision
    theirs = class_gate.champion_counts(client, previous.run_id) if previous else None
    refusal = class_gate.class_refusal(counts, theirs, rules.max_class_regression, rules.min_class_recall)
    if refusal:
        return Decision(CHALLENGER, f"{refusal} (overall: {decision.reason})")
    if previous and theirs is None and rules.max_class_regression is not None:
        return Decision(CHAMPION, f"{decision.reason}; the champion's per-class recall is not recorded: classes "
                                  "not compared")
    return decision


def promote(tracker: Tracker, model_uri: str | None, accuracy: float, test_images: int, classes: list[str], cfg,
            image_size: int, tags: dict[str, str],
            counts: dict[str, list[int]] | None = None) -> tuple[str, Decision] | None:
    """Register the logged model as `cfg.registered_model` (tagged with its classes, size and `tags`) and gate
    `champion`. `cfg` is the evaluate section of params. None when the stage is not tracked (--no-track)."""
    if model_uri is None:
        return None
    with tracker.tolerant("registering the model"):
        version, decision = register_and_gate(model_uri, cfg.registered_model, accuracy, GateRules.of(cfg),
                                              {"classes": json.dumps(classes), "image_size": str(image_size), **tags},
                                              test_images, counts)
    if tracker.lost:
        return None
    tracker.set_tags({"registry.version": version, "registry.alias": decision.alias,
                      "registry.reason": decision.reason})
    return version, decision


def check_registry_accepts(tracker: Tracker, name: str, classes: list[str]) -> None:
    """Before any work of a tracked stage: the registered name's champion has the same classes."""
    if tracker.active:
        with tracker.tolerant("reading the registry"):
            check_same_classes(mlflow.MlflowClient(), name, classes)


def roll_back(client, name: str, version: str, reason: str) -> str | None:
    """Point `champion` back at the version `version` replaced (none: remove the alias) and tag why on `version`.
    Only while `champion` still points at `version`: a later promotion is not undone. The version now champion."""
    client.set_model_version_tag(name, version, "release.reason", reason)
    current = champion_version(client, name)
    if current is None or str(current.version) != str(version):
        log.warning("%s version %s is no longer champion: nothing to roll back", name, version)
        return str(current.version) if current else None
    previous = client.get_model_version(name, version).tags.get(PREVIOUS_TAG)
    if previous:
        client.set_registered_model_alias(name, CHAMPION, previous)
    else:
        client.delete_registered_model_alias(name, CHAMPION)
    client.set_model_version_tag(name, version, "gate.alias", "rolled_back")
    return previous
