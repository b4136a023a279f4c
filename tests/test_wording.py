"""A count with its noun in the right number."""

from transferlab.core.wording import plural


def test_one_is_singular_and_every_other_count_plural():
    """Issue 42: "predict: 1 images in batches of 32", "the data has 1 class" beside "0 class"."""
    assert [plural(count, "image") for count in (0, 1, 2)] == ["0 images", "1 image", "2 images"]
    assert [plural(count, "class") for count in (0, 1)] == ["0 classes", "1 class"]
    assert (plural(3, "copy"), plural(2, "batch"), plural(2, "day"), plural(2, "shard file")) == (
        "3 copies", "2 batches", "2 days", "2 shard files")
    assert plural(2, "person", "people") == "2 people"
