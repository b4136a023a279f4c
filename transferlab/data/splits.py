"""Deterministic, stratified split assignment that honours a source's official splits."""

from __future__ import annotations

import hashlib
from collections import defaultdict

import numpy as np

from transferlab.data.raw_layout import RawImage

TRAIN, VALIDATION, TEST = "train", "validation", "test"
SPLITS = (TRAIN, VALIDATION, TEST)


def _class_rng(seed: int, class_name: str, purpose: str) -> np.random.Generator:
    # Seeded per class, so adding a class never reshuffles the others.
    digest = hashlib.sha256(f"{seed}/{class_name}/{purpose}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _carve(items: list[RawImage], fraction: float, rng: np.random.Generator) -> tuple[list, list]:
    """Split off round(fraction * n) items at random: (carved, rest), each in the original order."""
    count = int(round(fraction * len(items)))
    chosen = set(rng.permutation(len(items))[:count].tolist())
    carved = [item for index, item in enumerate(items) if index in chosen]
    rest = [item for index, item in enumerate(items) if index not in chosen]
    return carved, rest


def assign_splits(items: list[RawImage], val_fraction: float, test_fraction: float, seed: int) -> dict[str, str]:
    """Map each item's relative path to train/validation/test.

    Official splits are kept. A missing test split is carved from validation (or, without one, from
    train); a missing validation split is carved from train. Fractions are of the pool carved from.
    """
    present = {item.source_split for item in items}
    by_class: dict[str, dict[str, list[RawImage]]] = defaultdict(lambda: defaultdict(list))
    for item in sorted(items, key=lambda entry: entry.relative):
        pool = TRAIN if item.source_split not in (VALIDATION, TEST) else item.source_split
        by_class[item.class_name][pool].append(item)
    assignment: dict[str, str] = {}
    for class_name, pools in sorted(by_class.items()):
        train, validation, test = pools[TRAIN], pools[VALIDATION], pools[TEST]
        total_train = len(train)
        if TEST not in present:
            source = validation if VALIDATION in present else train
            carved, rest = _carve(source, test_fraction, _class_rng(seed, class_name, TEST))
            test = carved
            if VALIDATION in present:
                validation = rest
            else:
                train = rest
        if VALIDATION not in present:
            # The fraction is of the whole training pool, so val/test sizes do not depend on each other.
            fraction = min(1.0, val_fraction * total_train / max(len(train), 1))
            validation, train = _carve(train, fraction, _class_rng(seed, class_name, VALIDATION))
        for split, members in ((TRAIN, train), (VALIDATION, validation), (TEST, test)):
            assignment.update({item.relative: split for item in members})
    return assignment
