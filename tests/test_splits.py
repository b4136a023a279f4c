from collections import Counter
from pathlib import Path

from transferlab.data.raw_layout import RawImage
from transferlab.data.splits import assign_splits


def _items(spec: dict[str, dict[str, int]]) -> list[RawImage]:
    """spec: source_split -> class -> count."""
    items = []
    for split, classes in spec.items():
        for name, count in classes.items():
            for n in range(count):
                relative = f"{split}/{name}/{n}.jpg"
                items.append(RawImage(Path(relative), relative, name, split))
    return items


def _counts(items, assignment):
    return Counter((assignment[i.relative], i.class_name) for i in items)


def test_unsplit_source_is_carved_stratified():
    items = _items({"all": {"a": 50, "b": 100}})
    counts = _counts(items, assign_splits(items, 0.2, 0.1, seed=1))
    assert counts[("validation", "a")] == 10 and counts[("validation", "b")] == 20
    assert counts[("test", "a")] == 5 and counts[("test", "b")] == 10
    assert counts[("train", "a")] == 35 and counts[("train", "b")] == 70


def test_official_test_split_is_kept_and_validation_carved_from_train():
    items = _items({"train": {"a": 100}, "test": {"a": 30}})
    assignment = assign_splits(items, 0.2, 0.5, seed=1)
    assert all(assignment[i.relative] == "test" for i in items if i.source_split == "test")
    assert _counts(items, assignment) == Counter({("train", "a"): 80, ("validation", "a"): 20, ("test", "a"): 30})


def test_missing_test_split_is_carved_from_validation():
    items = _items({"train": {"a": 500, "b": 500}, "validation": {"a": 250, "b": 250}})
    counts = _counts(items, assign_splits(items, 0.2, 0.2, seed=3))
    assert counts[("train", "a")] == 500 and counts[("test", "a")] == 50 and counts[("validation", "a")] == 200


def test_assignment_is_deterministic_and_depends_on_the_seed():
    items = _items({"all": {"a": 40, "b": 40}})
    assert assign_splits(items, 0.25, 0.25, 5) == assign_splits(list(reversed(items)), 0.25, 0.25, 5)
    assert assign_splits(items, 0.25, 0.25, 5) != assign_splits(items, 0.25, 0.25, 6)


def test_adding_a_class_does_not_reshuffle_the_others():
    before = assign_splits(_items({"all": {"a": 40}}), 0.25, 0.25, 5)
    after = assign_splits(_items({"all": {"a": 40, "z": 10}}), 0.25, 0.25, 5)
    assert {k: v for k, v in after.items() if "/a/" in k} == before


def test_a_single_image_class_stays_in_train():
    items = _items({"all": {"solo": 1}})
    assert list(assign_splits(items, 0.2, 0.2, 0).values()) == ["train"]
