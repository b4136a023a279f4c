"""Which classes the targeted attacks push images into: `adversarial.target` resolved against the classes.

Pure logic on the class list (no TensorFlow), so check_params and preprocess refuse an impossible target before
any training, with the same rule the adversarial report applies."""

from __future__ import annotations

from transferlab.core.errors import DataError, ParamsError
from transferlab.core.wording import plural

AUTO = "auto"
CAT_NAMES = {"cat", "cats"}


def auto_target(classes: list[dict]) -> str:
    """The seed lesson's `species:cat` where the classes hold some cats and some others, else the first class."""
    cats = _species_members("cat", classes)
    return "species:cat" if cats and len(cats) < len(classes) else classes[0]["name"]


def target_classes(target: str, classes: list[dict]) -> list[int]:
    """`auto`; `species:<s>` (or a bare `cat`) for every class of that species; otherwise a class name."""
    if len(classes) < 2:  # the data's fault, not the target's (check_params and preprocess refuse it first)
        raise DataError(f"the data has {plural(len(classes), 'class')}; a classifier, and a targeted attack, needs "
                        f"at least two")
    if target == AUTO:
        target = auto_target(classes)
    names = [c["name"] for c in classes]
    chosen = _species_members(target.removeprefix("species:"), classes)
    if not chosen and target in names:
        chosen = [names.index(target)]
    if not chosen:
        raise ParamsError(f"adversarial.target: {target!r} matches no class; allowed: auto, a class name "
                          f"({', '.join(map(repr, names[:8]))}{', ...' if len(names) > 8 else ''}) or "
                          f"species:<cat|dog>")
    if len(chosen) == len(classes):
        raise ParamsError(f"adversarial.target: {target!r} covers every class, so nothing can be pushed into it")
    return sorted(chosen)


def _species_members(species: str, classes: list[dict]) -> list[int]:
    chosen = [c["index"] for c in classes if c.get("species") and c["species"].lower() == species.lower()]
    if not chosen and species.lower() == "cat":
        chosen = [c["index"] for c in classes if c["name"].lower() in CAT_NAMES]
    return chosen
