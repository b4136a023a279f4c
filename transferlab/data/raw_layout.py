"""The canonical layout every download source writes and preprocess reads.

    <raw>/images/<split>/<class>/<file>     split: train | validation | test | all
    <raw>/source.json                       where the data came from, species per class, the files left out
                                            (counted by reason, the first few listed), and the class of each
                                            class folder whose name is not the class itself
    <raw>/left_out.csv                      every file (or table row) left out, with its reason

Sources keep their official splits (`train`, `validation`, `test`); a source without splits uses `all`.
File bytes are copied unchanged, so every decoding decision is made, and reported, by preprocess.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

UNSPLIT = "all"
SOURCE_FILE = "source.json"
LEFT_OUT_FILE = "left_out.csv"
LEFT_OUT_COLUMNS = ["file", "row", "reason"]  # row: a table's, as a spreadsheet numbers it; empty for a folder
SHOWN = 20  # entries a report lists of a left-out or skipped list; every one is in its CSV
IMAGES_DIR = "images"
# Names users' tools leave beside images; never data.
IGNORED_NAMES = {"Thumbs.db", "desktop.ini"}


@dataclass
class SourceInfo:
    source: str
    description: str
    species: dict[str, str] = field(default_factory=dict)
    # every entry ({file, reason}, a table's with its row) as a source gives them (a table's as a frame: a
    # million rows as dicts would take gigabytes); read back from source.json, the first SHOWN of them
    left_out: Sequence[dict[str, str]] | pd.DataFrame = field(default_factory=list)
    # folder name -> class name, where a class name cannot be a folder name as it is ("a/b", ".hidden", "Cat"
    # beside "cat" on a case-insensitive disk); folders not listed are named after their class
    class_folders: dict[str, str] = field(default_factory=dict)
    num_left_out: int = 0  # as read back from source.json
    left_out_by_reason: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RawImage:
    path: Path
    relative: str
    class_name: str
    source_split: str


def is_data_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.name not in IGNORED_NAMES


def write_source_info(raw_dir: Path, info: SourceInfo) -> None:
    """source.json, with the left-out entries counted by reason and the first SHOWN of them, and left_out.csv
    with every one: a table of a million bad rows gives a small JSON file, not a 100 MB one."""
    left_out = pd.DataFrame(info.left_out).reindex(columns=LEFT_OUT_COLUMNS).fillna("")
    left_out.to_csv(raw_dir / LEFT_OUT_FILE, index=False)
    record = {"source": info.source, "description": info.description, "species": info.species,
              "class_folders": info.class_folders, "num_left_out": len(left_out),
              "left_out_by_reason": counts_by_reason(left_out["reason"]), "left_out": shown(left_out)}
    (raw_dir / SOURCE_FILE).write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")


def read_source_info(raw_dir: Path) -> SourceInfo:
    return SourceInfo(**json.loads((raw_dir / SOURCE_FILE).read_text(encoding="utf-8")))


def shown(entries: pd.DataFrame) -> list[dict[str, str]]:
    """The first SHOWN entries, without the columns they all leave empty."""
    head = entries.head(SHOWN)
    return head.loc[:, [column for column in head.columns if (head[column] != "").any()]].to_dict("records")


def counts_by_reason(reasons: pd.Series) -> dict[str, int]:
    """How many entries give each kind of reason, most first: the reason without its particulars (a row
    number, a path in parentheses, a quoted value), so that a million rows count into a few kinds."""
    exact = reasons.astype(str).value_counts()  # a million rows give few distinct reasons: edit only those
    kinds = exact.index.str.replace(r"\s*\([^()]*\)", "", regex=True).str.replace(r"'[^']*'", "'…'", regex=True)
    counts = exact.groupby(kinds).sum()
    return {str(kind): int(count) for kind, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))}


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
