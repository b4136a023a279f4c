"""Bring-your-own images: class folders, split/class folders, or the extracted Oxford-IIIT Pet archive."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

from transferlab.core.errors import DataError, ParamsError
from transferlab.core.file_kinds import not_opened, special_kind
from transferlab.data.raw_layout import (IMAGES_DIR, NOT_UTF8_FILE, UNSPLIT, SourceInfo, is_data_file,
                                         printable_name)

Layout = Literal["oxford", "splits", "classes"]
SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "val": "validation",
                 "valid": "validation", "test": "test", "testing": "test"}
OXFORD_SPECIES = {"1": "cat", "2": "dog"}


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def detect_layout(root: Path) -> Layout:
    """Oxford if it has images/ and annotations/list.txt; splits if every subfolder is a split name."""
    if (root / "annotations" / "list.txt").is_file() and (root / "images").is_dir():
        return "oxford"
    names = [p.name.lower() for p in _subdirs(root)]
    if names and all(name in SPLIT_ALIASES for name in names):
        return "splits"
    return "classes"


def folder_classes(root: Path) -> dict[str, str | None]:
    """The classes a folder holds, with their species where the layout gives one (Oxford's list.txt)."""
    layout = detect_layout(root)
    if layout == "oxford":
        return {breed_of(row[0]): OXFORD_SPECIES.get(row[2], "unknown")
                for row in _read_list(root / "annotations" / "list.txt")}
    folders = [root] if layout == "classes" else _subdirs(root)
    return {p.name: None for folder in folders for p in _subdirs(folder) if printable_name(p.name) is None}


def import_folder(root: Path, raw_dir: Path, unlisted: str = "skip", key: str = "data.folder.root") -> SourceInfo:
    """Copy a user's folder into the raw layout; the bytes are copied unchanged."""
    if not root.is_dir():
        raise ParamsError(f"{key}: folder not found: {root}")
    layout = detect_layout(root)
    images = raw_dir / IMAGES_DIR
    if layout == "oxford":
        return _import_oxford(root, images, unlisted)
    left_out: list[dict[str, str]] = []
    if layout == "splits":
        for split_dir in _subdirs(root):
            _copy_class_folders(split_dir, images / SPLIT_ALIASES[split_dir.name.lower()], key, root, left_out)
        return SourceInfo("folder", f"{root} (split/class folders)", left_out=left_out)
    _copy_class_folders(root, images / UNSPLIT, key, root, left_out)
    return SourceInfo("folder", f"{root} (class folders)", left_out=left_out)


def _copy_class_folders(source: Path, target: Path, key: str, root: Path, left_out: list[dict[str, str]]) -> None:
    class_dirs = _subdirs(source)
    if not class_dirs:
        raise DataError(f"{key}: no class folders in {source} (expected <class>/<image> or <split>/<class>/<image>)")
    for class_dir in class_dirs:
        if (shown := printable_name(class_dir.relative_to(root).as_posix())) is not None:
            left_out.append({"file": shown, "reason": "class folder name is not valid UTF-8; rename the folder"})
            continue
        (target / class_dir.name).mkdir(parents=True, exist_ok=True)
        for path in walk_images(class_dir, root, left_out):
            destination = target / class_dir.name / path.relative_to(class_dir)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)


def walk_images(folder: Path, root: Path, left_out: list[dict[str, str]]) -> list[Path]:
    """Data files below the class folder `folder`, following symlinks only inside it and never into a folder
    already walked: a link back up (`ln -s .. loop`) would otherwise repeat the tree and label every other
    class's images as this one. Links not followed are recorded in `left_out` (paths relative to `root`)."""
    boundary, visited, found = folder.resolve(), {folder.resolve()}, []

    def skip(path: Path, reason: str) -> None:
        name = path.relative_to(root).as_posix()
        left_out.append({"file": printable_name(name) or name, "reason": reason})

    pending = [folder]
    while pending:
        current = pending.pop()
        for entry in sorted(current.iterdir(), reverse=True):
            real = entry.resolve()
            if entry.is_symlink() and not real.is_relative_to(boundary):
                skip(entry, f"symlink out of its class folder (to {real}); not followed")
            elif entry.is_dir() and not entry.name.startswith("."):
                if real in visited:
                    skip(entry, "symlink to a folder already read (a loop or a second path to it); not followed")
                else:
                    visited.add(real)
                    pending.append(entry)
            elif (kind := special_kind(entry)) and not entry.name.startswith("."):
                skip(entry, not_opened(kind))
            elif is_data_file(entry):
                if (shown := printable_name(entry.relative_to(root).as_posix())) is not None:
                    left_out.append({"file": shown, "reason": NOT_UTF8_FILE})
                else:
                    found.append(entry)
    return sorted(found)


def _read_list(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r}); "
                        f"the Oxford-IIIT lists are plain text, one image per line") from None
    rows = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            rows.append(line.split())
    return rows


def breed_of(stem: str) -> str:
    """Oxford file names are <breed>_<number>; breeds themselves contain underscores."""
    return stem.rsplit("_", 1)[0]


def _import_oxford(root: Path, images: Path, unlisted: str) -> SourceInfo:
    annotations = root / "annotations"
    species = {breed_of(row[0]): OXFORD_SPECIES.get(row[2], "unknown") for row in _read_list(annotations / "list.txt")}
    official = {}
    for list_name, split in (("trainval.txt", "train"), ("test.txt", "test")):
        if not (annotations / list_name).is_file():
            raise DataError(f"data.folder.root: Oxford-IIIT layout without annotations/{list_name} in {root}")
        official.update({row[0]: split for row in _read_list(annotations / list_name)})
    left_out = []
    boundary = root.resolve()
    for path in sorted(p for p in (root / "images").iterdir() if is_data_file(p)):
        if path.suffix.lower() == ".mat":  # the original archive ships three stray MATLAB files
            continue
        if not path.resolve().is_relative_to(boundary):
            left_out.append({"file": path.name, "reason": f"symlink out of the data folder (to {path.resolve()})"})
            continue
        if (shown := printable_name(path.name)) is not None:
            left_out.append({"file": shown, "reason": NOT_UTF8_FILE})
            continue
        split = official.get(path.stem)
        if split is None and unlisted == "skip":
            left_out.append({"file": path.name, "reason": "not in annotations/trainval.txt or test.txt"})
            continue
        target = images / (split or "train") / breed_of(path.stem)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target / path.name)
    return SourceInfo("folder", f"{root} (Oxford-IIIT Pet layout, official lists)", species, left_out)
