"""The canonical layout every download source writes and preprocess reads.

    <raw>/images/<split>/<class>/<file>     split: train | validation | test | all
    <raw>/source.json                       where the data came from, species per class, files left out

Sources keep their official splits (`train`, `validation`, `test`); a source without splits uses `all`.
File bytes are copied unchanged, so every decoding decision is made, and reported, by preprocess.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

UNSPLIT = "all"
SOURCE_FILE = "source.json"
IMAGES_DIR = "images"
# Names users' tools leave beside images; never data.
IGNORED_NAMES = {"Thumbs.db", "desktop.ini"}


@dataclass
class SourceInfo:
    source: str
    description: str
    species: dict[str, str] = field(default_factory=dict)
    left_out: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class RawImage:
    path: Path
    relative: str
    class_name: str
    source_split: str


def is_data_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.name not in IGNORED_NAMES


def write_source_info(raw_dir: Path, info: SourceInfo) -> None:
    (raw_dir / SOURCE_FILE).write_text(json.dumps(asdict(info), indent=2, sort_keys=True), encoding="utf-8")


def read_source_info(raw_dir: Path) -> SourceInfo:
    return SourceInfo(**json.loads((raw_dir / SOURCE_FILE).read_text(encoding="utf-8")))


def list_raw_images(raw_dir: Path) -> list[RawImage]:
    """Every file below <raw>/images/<split>/<class>/, sorted, so the order never depends on the file system."""
    images_dir = raw_dir / IMAGES_DIR
    found = []
    for split_dir in sorted(p for p in images_dir.iterdir() if p.is_dir()):
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            for path in sorted(p for p in class_dir.rglob("*") if is_data_file(p)):
                relative = path.relative_to(images_dir).as_posix()
                found.append(RawImage(path, relative, class_dir.name, split_dir.name))
    return found


NOT_UTF8_FILE = "file name is not valid UTF-8; rename the file"


def printable_name(name: str) -> str | None:
    """None when `name` is valid UTF-8; else the name with its undecodable bytes shown as \\xNN, for reports.

    Such names (made on another system's encoding) cannot be stored in the manifest or a TFRecord key."""
    try:
        name.encode("utf-8")
        return None
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
