"""A count with its noun in the right number: "1 image", "2 images", "1 class", "0 classes"."""

from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`count` and `noun`, the noun plural unless the count is one (`many` for an irregular plural)."""
    if count == 1:
        return f"{count} {noun}"
    if many is None:
        many = noun[:-1] + "ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou" else \
            noun + "es" if noun.endswith(("s", "x", "ch", "sh")) else noun + "s"
    return f"{count} {many}"
