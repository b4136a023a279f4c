"""The MLflow registry promotion gate: `champion` moves only for a model that is good enough and no worse."""

from __future__ import annotations

from dataclasses import dataclass

CHAMPION, CHALLENGER = "champion", "challenger"
ACCURACY_TAG = "test_accuracy"


@dataclass(frozen=True)
class Decision:
    alias: str
    reason: str


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


def champion_accuracy(client, name: str) -> float | None:
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    value = version.tags.get(ACCURACY_TAG)
    return float(value) if value is not None else None


def register_and_gate(model_uri: str, name: str, accuracy: float, min_accuracy: float, max_regression: float,
                      tags: dict[str, str]) -> tuple[str, Decision]:
    """Register the model as a new version, then point `champion` or `challenger` at it."""
    import mlflow

    client = mlflow.MlflowClient()
    current = champion_accuracy(client, name)
    version = mlflow.register_model(model_uri, name)
    decision = decide(accuracy, current, min_accuracy, max_regression)
    for key, value in {**tags, ACCURACY_TAG: str(accuracy), "gate.reason": decision.reason}.items():
        client.set_model_version_tag(name, version.version, key, value)
    client.set_registered_model_alias(name, decision.alias, version.version)
    return str(version.version), decision


def log_and_promote(model, accuracy: float, classes: list[str], cfg, image_size: int) -> tuple[str, Decision] | None:
    """Log the model to the active stage run, register it as `cfg.registered_model`, and gate `champion`.

    `cfg` is the evaluate section of params. Returns None when the stage is not tracked (--no-track)."""
    import json

    import numpy as np

    from transferlab.tracking import mlflow_runs

    example = np.zeros((1, image_size, image_size, 3), np.float32)
    uri = mlflow_runs.log_keras_model(model, "model", example)
    if uri is None:
        return None
    version, decision = register_and_gate(uri, cfg.registered_model, accuracy, cfg.min_accuracy, cfg.max_regression,
                                          {"classes": json.dumps(classes), "image_size": str(image_size)})
    mlflow_runs.set_tags({"registry.version": version, "registry.alias": decision.alias,
                          "registry.reason": decision.reason})
    return version, decision
