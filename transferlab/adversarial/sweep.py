"""The adversarial report's computations: an epsilon sweep, the seed's unbounded replication, target sets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from transferlab.adversarial.attacks import class_mask, pgd, probabilities, unbounded_steps
from transferlab.core.progress import Heartbeat, with_progress
from transferlab.core.wording import plural


@dataclass
class SweepRow:
    epsilon: float
    clean_accuracy: float
    robust_accuracy: float
    targeted_success: float
    mean_target_confidence: float
    linf_max: float
    linf_mean: float
    l2_mean: float


@dataclass
class Sweep:
    rows: list[SweepRow]
    examples: dict[float, np.ndarray] = field(default_factory=dict)  # targeted adversarial images per epsilon
    source_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, int))


def _batched(function, arrays: list[np.ndarray], batch: int, beat: Callable[[str], None] | None = None,
             what: str = "") -> np.ndarray:
    """`function` on `batch` rows at a time; `beat` hears how far it got (a heartbeat for the log)."""
    parts, total = [], len(arrays[0])
    for start in range(0, total, batch):
        parts.append(np.asarray(function(*(a[start:start + batch] for a in arrays))))
        if beat:
            beat(f"{what}: {min(start + batch, total)}/{total} images")
    return np.concatenate(parts)


def epsilon_sweep(forward, images: np.ndarray, labels: np.ndarray, targets: list[int], epsilons: list[float],
                  steps: int, step_factor: float, seed: int, batch: int = 16) -> Sweep:
    """Untargeted PGD on the correctly classified images not yet broken, targeted PGD on the correctly
    classified non-target ones.

    An image counts as broken (or as a targeted success) at epsilon when an attack at that or any smaller
    budget succeeded: an attack within a smaller budget is also within the larger one, so robust accuracy
    is the worst case over the attacks run and cannot rise with epsilon.
    """
    num_classes = probabilities(forward, images[:1]).shape[1]
    mask = class_mask(num_classes, targets)
    clean = _batched(lambda x: probabilities(forward, x), [images], batch).argmax(axis=1)
    correct = clean == labels
    source = correct & ~mask[labels]
    broken, succeeded = np.zeros(len(images), bool), np.zeros(len(images), bool)
    rows, examples = [], {}
    desc = f"adversarial_report: epsilon sweep ({plural(len(images), 'image')})"
    beat = Heartbeat(desc)
    for epsilon in with_progress(sorted(epsilons), desc=desc):
        step = step_factor * epsilon / steps

        def attack(x, y, target=None):
            return pgd(forward, x, y, epsilon, steps, step, target, seed=seed).numpy()

        # Only images still standing are attacked: a misclassified image, or one broken within a smaller budget,
        # is already counted as broken here, so attacking it again could not change any figure.
        standing = np.flatnonzero(correct & ~broken)
        untargeted = _batched(attack, [images[standing], labels[standing]], batch, beat,
                              f"epsilon {epsilon:g}, untargeted") if len(standing) else images[:0]
        targeted = _batched(lambda x, y: attack(x, y, mask), [images[source], labels[source]], batch, beat,
                            f"epsilon {epsilon:g}, targeted") if source.any() else images[:0]
        for adversarial, original in ((untargeted, images[standing]), (targeted, images[source])):
            if adversarial.size:
                assert np.abs(adversarial - original).max() <= epsilon + 1e-3, "L-inf budget violated"
        if len(standing):
            fooled = _batched(lambda x: probabilities(forward, x), [untargeted], batch).argmax(1) != labels[standing]
            broken[standing[fooled]] = True
        target_probs = _batched(lambda x: probabilities(forward, x), [targeted], batch) if source.any() \
            else np.zeros((0, num_classes))
        succeeded[np.flatnonzero(source)] |= mask[target_probs.argmax(1)] if len(target_probs) else False
        delta = (targeted - images[source]).reshape(len(targeted), -1) if len(targeted) else np.zeros((1, 1))
        rows.append(SweepRow(float(epsilon), float(correct.mean()), float((correct & ~broken).mean()),
                             float(succeeded[source].mean()) if source.any() else float("nan"),
                             float(target_probs[:, mask].sum(1).mean()) if len(target_probs) else float("nan"),
                             float(np.abs(delta).max()), float(np.abs(delta).max(1).mean()),
                             float(np.linalg.norm(delta, axis=1).mean())))
        examples[float(epsilon)] = targeted
    return Sweep(rows, examples, np.flatnonzero(source))


@dataclass
class Replication:
    before: np.ndarray  # class probabilities
    after: np.ndarray
    image: np.ndarray
    adversarial: np.ndarray
    linf: float


def replicate_seed_attack(forward, image: np.ndarray, targets: list[int], steps: int, step_size: float) -> Replication:
    """The lesson's dog-to-cat demo: unbounded gradient steps toward the target, before/after probabilities."""
    batch = image[None].astype(np.float32)
    num_classes = probabilities(forward, batch).shape[1]
    adversarial = unbounded_steps(forward, batch, class_mask(num_classes, targets), steps, step_size).numpy()
    return Replication(probabilities(forward, batch)[0], probabilities(forward, adversarial)[0], image,
                       adversarial[0], float(np.abs(adversarial[0] - image).max()))


def top_k(probabilities_row: np.ndarray, names: list[str], k: int = 5) -> list[tuple[str, float]]:
    order = np.argsort(-probabilities_row)[:k]
    return [(names[i], float(probabilities_row[i])) for i in order]



COMPARED = ("clean_accuracy", "robust_accuracy", "targeted_success")


def side_by_side(ours: pd.DataFrame, standard: pd.DataFrame) -> pd.DataFrame:
    """Two sweep tables on the same epsilons as one: our figures, then the standard model's (suffix _standard)."""
    theirs = standard[["epsilon", *COMPARED]].rename(columns={name: f"{name}_standard" for name in COMPARED})
    return ours[["epsilon", *COMPARED]].merge(theirs, on="epsilon", how="outer")


def transfer_rates(forward, other, sweep: Sweep, images: np.ndarray, labels: np.ndarray, targets: list[int],
                   name: str) -> list[dict]:
    """Per epsilon, how often the sweep's targeted images (made against `forward`) fool the model `other` as
    well, counted on the images `other` classifies correctly without the attack."""
    mask = class_mask(probabilities(other, images[:1]).shape[1], targets)
    sources = sweep.source_indices
    right = probabilities(other, images[sources]).argmax(1) == labels[sources] if len(sources) else np.zeros(0, bool)
    rows = []
    for epsilon, adversarial in sorted(sweep.examples.items()):
        counted = adversarial[right]
        theirs = probabilities(other, counted).argmax(1) if len(counted) else np.zeros(0, int)
        ours = probabilities(forward, counted).argmax(1) if len(counted) else np.zeros(0, int)
        rows.append({"epsilon": epsilon, "model": name, "images": int(right.sum()),
                     "source_success": _rate(mask[ours]), "transfer_targeted": _rate(mask[theirs]),
                     "transfer_fooled": _rate(theirs != labels[sources][right])})
    return rows


def _rate(hits: np.ndarray) -> float:
    return float(hits.mean()) if len(hits) else float("nan")
