"""The canonical layout every download source writes and preprocess reads.

    <raw>/images/<split>/<class>/<file>     split: train | validation | test | all
    <raw>/source.json                       where the data came from, species per class, files left out, and
                                            the class of each class folder whose name is not the class itself

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
    # folder name -> class name, where a class name cannot be a folder name as it is ("a/b", ".hidden", "Cat"
    # beside "cat" on a case-insensitive disk); folders not listed are named after their class
    class_folders: dict[str, str] = field(default_factory=dict)


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


def class_folder_names(class_names: list[str]) -> dict[str, str]:
    """A folder name for each class: the name itself where every file system can hold it, else `class_<n>`."""
    folders: dict[str, str] = {}
    taken: set[str] = set()
    for number, name in enumerate(class_names):
        plain = "/" not in name and "\\" not in name and "\0" not in name and not name.startswith(".") \
            and len(name.encode("utf-8")) <= 200 and name.strip() == name and name.lower() not in taken
        folder = name if plain else f"class_{number}"
        while not plain and folder.lower() in taken | {other.lower() for other in class_names}:
            folder = f"_{folder}"
        folders[name] = folder
        taken.add(folder.lower())
    return folders


def list_raw_images(raw_dir: Path) -> list[RawImage]:
    """Every file below <raw>/images/<split>/<class>/, sorted, so the order never depends on the file system."""
    images_dir = raw_dir / IMAGES_DIR
    class_of = read_source_info(raw_dir).class_folders if (raw_dir / SOURCE_FILE).is_file() else {}
    found = []
    for split_dir in sorted(p for p in images_dir.iterdir() if p.is_dir()):
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            for path in sorted(p for p in class_dir.rglob("*") if is_data_file(p)):
                relative = path.relative_to(images_dir).as_posix()
                found.append(RawImage(path, relative, class_of.get(class_dir.name, class_dir.name), split_dir.name))
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
