"""The headline: the few figures a user compares across runs first. Defined here once: evaluate writes them to
metrics/summary.json and onto the pipeline's MLflow run, and the Prefect flow's summary shows that file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def headline(head: Mapping[str, Any], fine_tune: Mapping[str, Any], test: Mapping[str, Mapping[str, Any]]
             ) -> dict[str, float | None]:
    """From the primary head's metrics, fine_tune.json and evaluate's summary of each model on the test split."""
    tuned = test["fine_tuned"]
    return {"head_val_accuracy": head.get("val_accuracy"), "fine_tuned_val_accuracy": fine_tune["val_accuracy"],
            "kept_head_only_weights": fine_tune["kept_head_only_weights"],
            "test_accuracy_head_only": test["head_only"]["accuracy"],
            "test_accuracy": tuned["accuracy"], "test_macro_f1": tuned["macro_f1"],
            # the 95 % (Wilson) interval of test_accuracy: how far a rerun on other images of the task could move it
            "test_accuracy_low": tuned["accuracy_low"], "test_accuracy_high": tuned["accuracy_high"],
            "test_images": tuned["n"]}
