"""Images listed in a labels table: Hugging Face `metadata.csv`, Kaggle `labels.csv`, fastai's `from_csv`.

Pandas reads the table (CSV, TSV or Parquet); each usable row's file is copied, bytes unchanged, into the raw
layout under its label. A row whose file is missing, outside the images folder, unlabeled, or listed twice with
two labels is reported in `source.json` (and so in `data_report.json`) with its reason, never dropped silently.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from transferlab.core.errors import DataError, ParamsError
from transferlab.core.file_kinds import not_opened, special_kind
from transferlab.core.params import TableParams
from transferlab.data.raw_layout import IMAGES_DIR, UNSPLIT, SourceInfo, class_folder_names
from transferlab.data.sources.folder import SPLIT_ALIASES

READERS = {".csv": lambda path: pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""]),
           ".tsv": lambda path: pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=[""]),
           ".parquet": pd.read_parquet}
# fastai's `is_valid` and the like: a true value puts the row in the validation split
BOOLEAN_SPLITS = {"true": "validation", "1": "validation", "yes": "validation",
                  "false": "train", "0": "train", "no": "train"}


def table_paths(cfg: TableParams, root: Path) -> tuple[Path, Path]:
    """The table file and the images folder its file column is relative to."""
    table = root / str(cfg.path)
    return table, (root / cfg.images) if cfg.images else table.parent


def read_table(cfg: TableParams, root: Path) -> pd.DataFrame:
    """The table with every configured column present, as strings (an empty cell is NaN); DataError otherwise."""
    table, _ = table_paths(cfg, root)
    reader = READERS.get(table.suffix.lower())
    if reader is None:
        raise ParamsError(f"data.table.path: {table.name} is not .csv, .tsv or .parquet")
    if not table.is_file():
        raise ParamsError(f"data.table.path: file not found: {cfg.path}")
    try:
        frame = reader(table)
    except (ValueError, UnicodeDecodeError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"{table}: cannot be read as a table ({str(exc).splitlines()[0][:160]})") from None
    for key in ("file_column", "label_column", "split_column"):
        column = getattr(cfg, key)
        if column is not None and column not in frame.columns:
            raise ParamsError(f"data.table.{key}: {table.name} has no column {column!r} "
                              f"(its columns: {', '.join(map(str, frame.columns[:12]))})")
    return frame


def table_labels(cfg: TableParams, root: Path) -> list[str]:
    """The class names the table gives, sorted as preprocess orders them."""
    labels = read_table(cfg, root)[cfg.label_column].dropna().astype(str).str.strip()
    return sorted({label for label in labels if label})


def import_table(cfg: TableParams, root: Path, raw_dir: Path) -> SourceInfo:
    """Copy every usable row's file into <raw>/images/<split>/<class>/<file>."""
    table, images = table_paths(cfg, root)
    if not images.is_dir():
        raise ParamsError(f"data.table.images: folder not found: {images}")
    frame = read_table(cfg, root)
    rows, left_out = _usable_rows(frame, cfg, images.resolve())
    folders = class_folder_names(sorted({label for _, label, _ in rows}))
    for path, label, split in rows:
        destination = raw_dir / IMAGES_DIR / split / folders[label] / path.relative_to(images.resolve())
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
    return SourceInfo("table", f"{table} ({len(rows)} of {len(frame)} rows, images in {images})",
                      left_out=left_out, class_folders={folder: label for label, folder in folders.items()})


def _usable_rows(frame: pd.DataFrame, cfg: TableParams, images: Path
                 ) -> tuple[list[tuple[Path, str, str]], list[dict[str, str]]]:
    """(file, label, split) per usable row, and a report entry for every other row."""
    usable: dict[Path, tuple[str, str, int]] = {}
    left_out: list[dict[str, str]] = []
    splits = frame[cfg.split_column] if cfg.split_column else pd.Series(UNSPLIT, index=frame.index)
    files, labels = frame[cfg.file_column], frame[cfg.label_column]
    for position, (file, label, split) in enumerate(zip(files, labels, splits)):
        row = str(position + 2)  # the line in a CSV with its header, as a spreadsheet shows it
        problem, path, label, split = _check_row(file, label, split, cfg, images)
        if problem is None and path in usable and usable[path][0] != label:
            problem = f"listed again with another label (row {usable[path][2]}: {usable[path][0]!r})"
        if problem is not None:
            left_out.append({"file": "" if pd.isna(file) else str(file), "row": row, "reason": problem})
        elif path in usable:
            left_out.append({"file": str(file), "row": row, "reason": f"listed twice (row {usable[path][2]})"})
        else:
            usable[path] = (label, split, int(row))
    return [(path, label, split) for path, (label, split, _) in usable.items()], left_out


def _check_row(file, label, split, cfg: TableParams, images: Path) -> tuple[str | None, Path, str, str]:
    """Why the row cannot be used (None when it can), with its resolved file, label and split."""
    label = "" if pd.isna(label) else str(label).strip()
    if pd.isna(file) or not str(file).strip():
        return "no file name", images, label, UNSPLIT
    if not label:
        return "no label", images, label, UNSPLIT
    if "\x00" in str(file):  # no file system takes it; pathlib would raise instead of answering
        return "a NUL byte in the file name", images, label, UNSPLIT
    path = (images / f"{str(file).strip()}{cfg.suffix}").resolve()
    if not path.is_relative_to(images):
        return f"outside the images folder {images}", path, label, UNSPLIT
    if kind := special_kind(path):
        return not_opened(kind), path, label, UNSPLIT
    if not path.is_file():
        return f"file not found in {images}", path, label, UNSPLIT
    split_name = _split_name(split) if cfg.split_column else UNSPLIT
    if split_name is None:
        return (f"{cfg.split_column} {split!r} is not a split (train, validation, test) or a boolean",
                path, label, UNSPLIT)
    return None, path, label, split_name


def _split_name(value) -> str | None:
    if isinstance(value, bool):
        return "validation" if value else "train"
    text = "" if pd.isna(value) else str(value).strip().lower()
    return SPLIT_ALIASES.get(text) or BOOLEAN_SPLITS.get(text)
