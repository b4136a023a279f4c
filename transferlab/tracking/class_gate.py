"""The registry gate per class: a challenger better on average may still fail one class, and a champion that
collapses on one breed is not a better model for the users of that breed (TFMA-style slicing)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from transferlab.core.intervals import difference_interval

# Per class [right, test images]: logged to the registering run, so the next gate reads the champion's from there.
ARTIFACT = "gate/class_recall.json"
ClassCounts = Mapping[str, Sequence[int]]


def class_counts(classes: Sequence[str], confusion) -> dict[str, list[int]]:
    """[right, test images] per class from a confusion matrix (rows: the true class)."""
    return {name: [int(confusion[i][i]), int(sum(confusion[i]))] for i, name in enumerate(classes)}


def class_refusal(challenger: ClassCounts, champion: ClassCounts | None, max_drop: float | None,
                  min_recall: float | None) -> str | None:
    """Why the challenger may not become champion because of one class, naming it; None when no class stops it.

    A drop counts when it is larger than `max_drop` and the 95 % interval of the change (Newcombe, on that class's
    test images only) lies below zero: a class of 5 test images losing one is noise, not a regression."""
    for name, (right, total) in challenger.items():
        if not total:
            continue
        recall = right / total
        if min_recall is not None and recall < min_recall:
            return (f"recall on class {name!r} is {recall:.3f} ({right}/{total} test images), below "
                    f"evaluate.min_class_recall {min_recall}")
        theirs = (champion or {}).get(name)
        if max_drop is None or not theirs or not theirs[1]:
            continue
        their_recall = theirs[0] / theirs[1]
        low, high = difference_interval(recall, total, their_recall, theirs[1])
        if their_recall - recall > max_drop and high < 0:
            return (f"recall on class {name!r} fell from the champion's {their_recall:.3f} to {recall:.3f} "
                    f"({total} test images), more than evaluate.max_class_regression {max_drop} and beyond that "
                    f"class's noise (95 % interval of the change {low:+.3f} to {high:+.3f})")
    return None


def champion_counts(client, champion_run_id: str | None) -> dict[str, list[int]] | None:
    """The champion's per-class counts from the run that registered it; None for a champion from before the gate
    recorded them (the per-class check is then skipped, and the reason says so)."""
    if not champion_run_id:
        return None
    from mlflow.exceptions import MlflowException

    try:
        path = client.download_artifacts(champion_run_id, ARTIFACT)
    except (MlflowException, OSError):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            counts = json.load(handle)
        return {str(name): [int(right), int(total)] for name, (right, total) in counts.items()}
    except (OSError, ValueError, TypeError, AttributeError):  # damaged: compared overall only, and the reason says so
        return None
