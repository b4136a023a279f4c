"""Images listed in a labels table: Hugging Face `metadata.csv`, Kaggle `labels.csv`, fastai's `from_csv`.

Pandas reads the table (CSV, TSV or Parquet) and checks its rows column by column; each usable row's file is
copied, bytes unchanged, into the raw layout under its label; a file value `s3://bucket/key` is an object fetched
from an S3-compatible store (`object_files.py`) into the place a local file `key` would take. A row whose file is
missing (or forbidden), outside the images folder, unlabeled, or listed twice with two labels is left out with its
reason (counted in `source.json`, every one in `left_out.csv`, and so in the data report), never dropped silently.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from transferlab.core.errors import DataError, ParamsError
from transferlab.core.file_kinds import not_opened, special_kind
from transferlab.core.params import TableParams
from transferlab.core.progress import with_progress
from transferlab.core.wording import plural
from transferlab.data.raw_layout import IMAGES_DIR, UNSPLIT, SourceInfo, class_folder_names, counts_by_reason
from transferlab.data.sources.folder import SPLIT_ALIASES
from transferlab.data.sources.object_files import SCHEME, fetch_objects, is_url, place, split_url, url_problem

READERS = {".csv": lambda path: pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""]),
           ".tsv": lambda path: pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=[""]),
           ".parquet": pd.read_parquet}
# fastai's `is_valid` and the like: a true value puts the row in the validation split
BOOLEAN_SPLITS = {"true": "validation", "1": "validation", "yes": "validation",
                  "false": "train", "0": "train", "no": "train"}
# One value a cell: text, a number or a boolean (a Parquet column can also hold lists, bytes, structs ...)
PLAIN = (str, int, float, bool, np.integer, np.floating, np.bool_)


def table_paths(cfg: TableParams, root: Path) -> tuple[Path, Path]:
    """The table file and the images folder its file column is relative to."""
    table = root / str(cfg.path)
    return table, (root / cfg.images) if cfg.images else table.parent


def read_table(cfg: TableParams, root: Path) -> pd.DataFrame:
    """The table with every configured column present, at least one row, and one plain value (or nothing) in
    each label and split cell; DataError or ParamsError otherwise, so check_params refuses it."""
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
    if frame.empty:
        raise DataError(f"{table}: no rows, only the names of its columns")
    for key in ("label_column", "split_column"):
        if (column := getattr(cfg, key)) is not None:
            _check_plain(frame[column], f"data.table.{key}", table)
    return frame


def _check_plain(values: pd.Series, key: str, table: Path) -> None:
    """A label or a split is one value a row: a column of lists (a multi-label table) or bytes is refused."""
    kinds = _value_kinds(values)
    if kinds.notna().any():
        position = int(np.flatnonzero(kinds.notna().to_numpy())[0])
        raise DataError(f"{table}: column {values.name!r} ({key}) holds {kinds.iloc[position]} values, not one "
                        f"value a row (row {position + 2}: {_shown(values.iloc[position])}); a table of several "
                        f"labels per image is not supported")


def _shown(value) -> str:
    return str(list(value) if isinstance(value, np.ndarray) else value)[:60]


def _value_kinds(values: pd.Series) -> pd.Series:
    """The kind of each cell that is not a plain value ("list", "bytes" ...); missing for the others."""
    if values.dtype != object:
        return pd.Series(None, index=values.index, dtype=object)
    return values.map(lambda value: None if value is None or value is pd.NA or isinstance(value, PLAIN)
                      else "list" if isinstance(value, (list, tuple, np.ndarray)) else type(value).__name__)


def table_labels(cfg: TableParams, root: Path) -> list[str]:
    """The class names the table gives, sorted as preprocess orders them."""
    labels = _text(read_table(cfg, root)[cfg.label_column])
    return sorted(set(labels[labels != ""]))


def import_table(cfg: TableParams, root: Path, raw_dir: Path, scratch: Path | None = None) -> SourceInfo:
    """Copy every usable row's file into <raw>/images/<split>/<class>/<file>; objects are fetched by way of
    `scratch` (a rerun after a kill fetches only what it lacks; a temporary folder when none is given)."""
    table, images = table_paths(cfg, root)
    if not images.is_dir():
        raise ParamsError(f"data.table.images: folder not found: {images}")
    frame = read_table(cfg, root)
    usable, left_out = usable_rows(frame, cfg, images.resolve())
    if usable.empty:
        raise DataError(_none_usable(table, left_out))
    folders = class_folder_names(sorted(usable["label"].unique()))
    destination = _destinations(raw_dir, folders, images.resolve())
    remote = usable["path"].str.startswith(SCHEME)
    for path, label, split, _ in with_progress(usable[~remote].itertuples(index=False), int((~remote).sum()),
                                               "download: copying files"):
        shutil.copyfile(path, destination(path, label, split))
    if remote.any():
        unfetched = _fetch_rows(usable[remote], destination, scratch, frame[cfg.file_column])
        if not unfetched.empty:
            left_out = pd.concat([left_out, unfetched]).sort_values("row", key=lambda rows: rows.astype(int))
            usable = usable[~usable["row"].isin(unfetched["row"].astype(int))]
        if usable.empty:
            raise DataError(_none_usable(table, left_out))
    return SourceInfo("table", f"{table} ({len(usable)} of {plural(len(frame), 'row')}, images in {images})",
                      left_out=left_out.reset_index(drop=True),
                      class_folders={folder: label for label, folder in folders.items()})


def _destinations(raw_dir: Path, folders: dict[str, str], images: Path) -> Callable[[str, str, str], Path]:
    """Where a row's file goes, its folder made: under its split and class, at its path in the images folder (an
    object: at its key)."""
    made: set[Path] = set()

    def destination(path: str, label: str, split: str) -> Path:
        relative = split_url(path)[1] if is_url(path) else Path(path).relative_to(images)
        target = raw_dir / IMAGES_DIR / split / folders[label] / relative
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        return target
    return destination


def _fetch_rows(rows: pd.DataFrame, destination: Callable[[str, str, str], Path], scratch: Path | None,
                files: pd.Series) -> pd.DataFrame:
    """Fetch the rows' objects into their places; the rows whose object could not be read, with the reason."""
    left = []
    with tempfile.TemporaryDirectory() if scratch is None else contextlib.nullcontext(scratch) as store:
        fetched = fetch_objects(rows["path"], Path(store) / "objects")
        for (path, label, split, row), (file, reason) in with_progress(zip(rows.itertuples(index=False), fetched),
                                                                       len(rows), "download: fetching objects"):
            if reason is None:
                place(file, destination(path, label, split))
            else:
                left.append({"file": str(files.iloc[row - 2]), "row": str(row), "reason": reason})
    return pd.DataFrame(left, columns=["file", "row", "reason"])


def _none_usable(table: Path, left_out: pd.DataFrame) -> str:
    """Why no row of the table can be used: its reasons, most frequent first, and the first row."""
    reasons = "; ".join(f"{plural(count, 'row')}: {kind}" for kind, count in
                        list(counts_by_reason(left_out["reason"]).items())[:4])
    first = left_out.iloc[0]
    return (f"{table}: none of its {plural(len(left_out), 'row')} can be used ({reasons}; the first: row "
            f"{first['row']}, file {first['file'][:60]!r})")


def usable_rows(frame: pd.DataFrame, cfg: TableParams, images: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The usable rows as (path, label, split), and every other row as (file, row, reason), both in row order.

    Column at a time: each distinct file name is looked up on disk once, however many rows name it (a
    million rows over a few files took 188 s and 1.7 GB row by row)."""
    files = frame[cfg.file_column]
    row = pd.Series(np.arange(len(frame)) + 2, index=frame.index)  # the line in a CSV with its header
    kinds = _value_kinds(files)
    names, labels = _text(files.where(kinds.isna())), _text(frame[cfg.label_column])
    reason = pd.Series(None, index=frame.index, dtype=object)
    if kinds.notna().any():
        _first_reason(reason, kinds.notna(), "a " + kinds[kinds.notna()] + " value, not a file name")
    _first_reason(reason, names == "", "no file name")
    _first_reason(reason, labels == "", "no label")
    _first_reason(reason, names.str.contains("\x00", regex=False), "a NUL byte in the file name")
    located = _locate(names[reason.isna()], cfg.suffix, images)
    paths, problems = (located.map(lambda found: found[part]).reindex(frame.index) for part in (0, 1))
    _first_reason(reason, problems.notna(), problems)
    splits = _splits(frame, cfg)
    if cfg.split_column is not None:
        _first_reason(reason, splits.isna(), f"{cfg.split_column} " + frame[cfg.split_column].map(repr)
                      + " is not a split (train, validation, test) or a boolean")
    _repeated(reason, paths, labels, row)
    _same_place(reason, paths, labels + "\0" + splits.astype(str), row, images)
    usable = pd.DataFrame({"path": paths, "label": labels, "split": splits, "row": row})[reason.isna()]
    file_text = files.astype(object).where(files.notna(), "").map(str)
    left = reason.notna()
    left_out = pd.DataFrame({"file": file_text[left], "row": row[left].astype(str), "reason": reason[left]})
    return usable.reset_index(drop=True), left_out.reset_index(drop=True)


def _text(values: pd.Series) -> pd.Series:
    """Each cell as stripped text, "" where it is empty."""
    return values.astype(object).where(values.notna(), "").astype(str).str.strip()


def _first_reason(reason: pd.Series, where: pd.Series, text) -> None:
    """Give `text` (one, or one a row) as the reason of the rows `where` says, unless they already have one."""
    chosen = where.reindex(reason.index, fill_value=False).astype(bool) & reason.isna()
    reason[chosen] = text.reindex(reason.index)[chosen] if isinstance(text, pd.Series) else text


def _locate(names: pd.Series, suffix: str, images: Path) -> pd.Series:
    """(resolved path, why it cannot be used or None) a row, each distinct name looked up once."""
    found = {name: _check_file(images, f"{name}{suffix}") for name in
             with_progress(names.unique(), None, "download: looking up the table's files")}
    return names.map(found)


def _check_file(images: Path, name: str) -> tuple[str, str | None]:
    if is_url(name):
        return name, url_problem(name)
    path = (images / name).resolve()
    if not path.is_relative_to(images):
        return str(path), f"outside the images folder {images}"
    if kind := special_kind(path):
        return str(path), not_opened(kind)
    if not path.is_file():
        return str(path), f"file not found in {images}"
    return str(path), None


def _splits(frame: pd.DataFrame, cfg: TableParams) -> pd.Series:
    """Each row's split (missing where its value is none), UNSPLIT without a split column."""
    if cfg.split_column is None:
        return pd.Series(UNSPLIT, index=frame.index, dtype=object)
    return _text(frame[cfg.split_column]).str.lower().map({**SPLIT_ALIASES, **BOOLEAN_SPLITS})


def _repeated(reason: pd.Series, paths: pd.Series, labels: pd.Series, row: pd.Series) -> None:
    """Rows naming a file an earlier usable row named: listed twice, or again with another label."""
    ok = reason.isna()
    groups = pd.DataFrame({"path": paths[ok], "label": labels[ok], "row": row[ok]}).groupby("path", sort=False)
    first_label, first_row = groups["label"].transform("first"), groups["row"].transform("first").astype(str)
    later = groups.cumcount() > 0
    same = later & (labels[ok] == first_label)
    _first_reason(reason, same, "listed twice (row " + first_row + ")")
    _first_reason(reason, later & ~same,
                  "listed again with another label (row " + first_row + ": " + first_label.map(repr) + ")")


def _same_place(reason: pd.Series, paths: pd.Series, folders: pd.Series, row: pd.Series, images: Path) -> None:
    """Rows whose file would land where an earlier usable row's file does: an object keeps its key as its path under
    its class, so one key in two buckets (or a local file at that path) would be one file."""
    ok = reason.isna()
    objects = paths[ok].astype(str).str.startswith(SCHEME)
    if not objects.any():
        return
    keys = paths[ok].str.replace(r"^s3://[^/]*/", "", regex=True)
    place = folders[ok] + "\0" + keys.where(objects, paths[ok].str.slice(len(str(images)) + 1))
    first_row = row[ok].groupby(place).transform("first").astype(str)
    _first_reason(reason, place.duplicated(), "the same path in data/raw as row " + first_row
                  + "'s file (an object keeps its key as its path)")
