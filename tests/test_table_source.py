"""data.source: table: a flat folder plus a labels table, as Kaggle, Hugging Face and fastai ship them."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import run_stages
from transferlab.core.errors import DataError, ParamsError
from transferlab.core.params import TableParams
from transferlab.data.raw_layout import list_raw_images, read_source_info
from transferlab.data.sources import known_classes
from transferlab.data.sources.table import import_table, table_labels

NAMES = ["golden retriever", "Škoda / Octavia", "café crème"]


def _image(path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")


def kaggle_folder(root, per_class: int = 4) -> None:
    """Kaggle's dog-breed layout: train/<id>.jpg and labels.csv with `id,breed`."""
    rows = []
    for number in range(per_class * len(NAMES)):
        _image(root / "train" / f"{number:04x}.jpg", number)
        rows.append({"id": f"{number:04x}", "breed": NAMES[number % len(NAMES)]})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)


def _left_out(info) -> list[dict]:
    return info.left_out.to_dict("records")


def kaggle_params(root) -> TableParams:
    return TableParams(path=str(root / "labels.csv"), images=str(root / "train"), file_column="id",
                       label_column="breed", suffix=".jpg")


def test_kaggle_labels_csv_keeps_every_class_name_as_written(tmp_path):
    kaggle_folder(tmp_path / "src")
    info = import_table(kaggle_params(tmp_path / "src"), tmp_path, tmp_path / "raw")
    from transferlab.data.raw_layout import write_source_info

    write_source_info(tmp_path / "raw", info)
    images = list_raw_images(tmp_path / "raw")
    assert len(images) == 12 and info.left_out.empty
    assert sorted({image.class_name for image in images}) == sorted(NAMES)
    assert {image.source_split for image in images} == {"all"}
    # "/" cannot be a folder name: the class keeps its name through source.json's class_folders
    assert read_source_info(tmp_path / "raw").class_folders["class_2"] == "Škoda / Octavia"


def test_missing_unlabeled_outside_and_conflicting_rows_are_reported_with_their_reason(tmp_path):
    src = tmp_path / "src"
    for name in ("a.png", "b.png", "c.png"):
        _image(src / name, len(name))
    _image(tmp_path / "elsewhere.png", 9)
    pd.DataFrame({"file_name": ["a.png", "gone.png", "b.png", "../elsewhere.png", "c.png", "c.png", "a.png", None],
                  "label": ["x", "x", None, "y", "y", "x", "x", "y"]}).to_csv(src / "metadata.csv", index=False)
    info = import_table(TableParams(path=str(src / "metadata.csv")), tmp_path, tmp_path / "raw")
    reasons = {(entry["row"], entry["file"]): entry["reason"] for entry in _left_out(info)}
    assert reasons.pop(("3", "gone.png")).startswith("file not found")
    assert reasons.pop(("4", "b.png")) == "no label"
    assert reasons.pop(("5", "../elsewhere.png")).startswith("outside the images folder")
    assert reasons.pop(("7", "c.png")) == "listed again with another label (row 6: 'y')"
    assert reasons.pop(("8", "a.png")) == "listed twice (row 2)"
    assert reasons.pop(("9", "")) == "no file name"
    assert reasons == {}
    assert sorted(p.relative_to(tmp_path / "raw").as_posix() for p in (tmp_path / "raw").rglob("*.png")) == [
        "images/all/x/a.png", "images/all/y/c.png"]


def test_fastai_is_valid_and_named_splits_choose_the_split(tmp_path):
    src = tmp_path / "src"
    for number in range(4):
        _image(src / "img" / f"{number}.jpg", number)
    pd.DataFrame({"name": [f"img/{n}.jpg" for n in range(4)], "label": ["a", "b", "a", "b"],
                  "is_valid": [False, True, True, False]}).to_parquet(src / "labels.parquet")
    cfg = TableParams(path=str(src / "labels.parquet"), file_column="name", split_column="is_valid")
    import_table(cfg, tmp_path, tmp_path / "raw")
    splits = {p.name: p.relative_to(tmp_path / "raw" / "images").parts[0] for p in (tmp_path / "raw").rglob("*.jpg")}
    assert splits == {"0.jpg": "train", "1.jpg": "validation", "2.jpg": "validation", "3.jpg": "train"}
    pd.DataFrame({"file_name": [f"img/{n}.jpg" for n in range(4)], "label": ["a", "b", "a", "b"],
                  "split": ["VALID", "holdout", "True", "test"]}).to_csv(src / "named.csv", index=False)
    info = import_table(TableParams(path=str(src / "named.csv"), split_column="split"), tmp_path, tmp_path / "raw2")
    splits = {p.name: p.relative_to(tmp_path / "raw2" / "images").parts[0] for p in (tmp_path / "raw2").rglob("*.jpg")}
    assert splits == {"0.jpg": "validation", "2.jpg": "validation", "3.jpg": "test"}
    assert _left_out(info)[0]["reason"] == "split 'holdout' is not a split (train, validation, test) or a boolean"


def test_a_missing_column_or_unreadable_table_is_one_line_naming_it(tmp_path):
    kaggle_folder(tmp_path)
    with pytest.raises(ParamsError, match=r"data.table.label_column: labels.csv has no column 'label' \(its columns: "
                                          r"id, breed\)"):
        table_labels(TableParams(path=str(tmp_path / "labels.csv"), file_column="id"), tmp_path)
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="broken.parquet: cannot be read as a table"):
        table_labels(TableParams(path=str(tmp_path / "broken.parquet")), tmp_path)
    with pytest.raises(ParamsError, match="data.table.path: labels.xlsx is not .csv, .tsv or .parquet"):
        table_labels(TableParams(path=str(tmp_path / "labels.xlsx")), tmp_path)


def test_check_params_refuses_a_target_no_class_matches_before_anything_runs(tmp_path):
    kaggle_folder(tmp_path / "src")
    overrides = {"data.source": "table", "data.table.path": str(tmp_path / "src" / "labels.csv"),
                 "data.table.images": str(tmp_path / "src" / "train"), "data.table.file_column": "id",
                 "data.table.label_column": "breed", "data.table.suffix": ".jpg"}
    params = run_stages(tmp_path, overrides, stages=["check_params"])
    assert json.loads((tmp_path / "data" / "params_checked.json").read_text()) == {"params": "valid"}
    from transferlab.core.params_loader import load_params

    assert [c["name"] for c in known_classes(load_params(params).data, tmp_path)] == sorted(NAMES)
    with pytest.raises(AssertionError, match="check_params exited 2"):
        run_stages(tmp_path, {"adversarial.target": "species:cat"}, stages=["check_params"])


def test_preprocess_gives_the_table_s_class_names_to_classes_json(tmp_path):
    kaggle_folder(tmp_path / "src")
    overrides = {"data.source": "table", "data.table.path": str(tmp_path / "src" / "labels.csv"),
                 "data.table.images": str(tmp_path / "src" / "train"), "data.table.file_column": "id",
                 "data.table.label_column": "breed", "data.table.suffix": ".jpg", "data.image_size": 32}
    run_stages(tmp_path, overrides)
    classes = json.loads((tmp_path / "data" / "prepared" / "classes.json").read_text(encoding="utf-8"))
    assert [c["name"] for c in classes] == sorted(NAMES)
    manifest = pd.read_csv(tmp_path / "data" / "prepared" / "manifest.csv")
    assert sorted(manifest["class_name"].unique()) == sorted(NAMES) and len(manifest) == 12


@pytest.mark.timeout(60)
def test_a_row_naming_a_fifo_or_a_device_is_left_out_with_its_kind(tmp_path):
    import os

    src = tmp_path / "src"
    _image(src / "a.png", 1)
    os.mkfifo(src / "pipe.png")
    (src / "zero.png").symlink_to("/dev/zero")
    pd.DataFrame({"file_name": ["a.png", "pipe.png", "zero.png"], "label": ["x", "x", "y"]}).to_csv(
        src / "metadata.csv", index=False)
    info = import_table(TableParams(path=str(src / "metadata.csv")), tmp_path, tmp_path / "raw")
    reasons = {entry["file"]: entry["reason"] for entry in _left_out(info)}
    assert reasons.pop("pipe.png") == "a FIFO (named pipe), not an image file; not opened"
    assert reasons.pop("zero.png").startswith("outside the images folder")  # the link resolves to /dev/zero
    assert reasons == {}


def test_an_absolute_path_in_the_file_column_is_outside_the_images_folder(tmp_path):
    """Issue 31: `images / "/etc/x.png"` is /etc/x.png in pathlib; the row must not copy a file from there."""
    src = tmp_path / "src"
    _image(src / "a.png", 1)
    _image(tmp_path / "elsewhere" / "b.png", 2)
    pd.DataFrame({"file_name": ["a.png", str(tmp_path / "elsewhere" / "b.png")], "label": ["x", "y"]}).to_csv(
        src / "metadata.csv", index=False)
    info = import_table(TableParams(path=str(src / "metadata.csv")), tmp_path, tmp_path / "raw")
    [entry] = _left_out(info)
    assert entry["reason"].startswith("outside the images folder") and entry["file"].endswith("b.png")
    assert [p.name for p in (tmp_path / "raw").rglob("*.png")] == ["a.png"]


def test_a_nul_byte_in_a_file_name_is_a_left_out_row_not_a_crash(tmp_path):
    """Issue 31: pathlib raised `ValueError: embedded null byte` out of the download stage."""
    src = tmp_path / "src"
    _image(src / "a.png", 1)
    pd.DataFrame({"file_name": ["a.png", "b\x00.png"], "label": ["x", "y"]}).to_csv(src / "metadata.csv", index=False)
    info = import_table(TableParams(path=str(src / "metadata.csv")), tmp_path, tmp_path / "raw")
    assert [(entry["row"], entry["reason"]) for entry in _left_out(info)] == [("3", "a NUL byte in the file name")]


def test_a_label_column_of_lists_is_refused_by_check_params_in_one_line(tmp_path, capsys):
    """Issue 42: check_params passed a Parquet label column of lists, and download raised a traceback."""
    _image(tmp_path / "a.png", 1)
    _image(tmp_path / "b.png", 2)
    pd.DataFrame({"file_name": ["a.png", "b.png"], "label": [["cat"], ["dog", "pet"]]}).to_parquet(
        tmp_path / "labels.parquet")
    with pytest.raises(DataError, match=r"labels.parquet: column 'label' \(data.table.label_column\) holds list "
                                        r"values, not one value a row \(row 2: \['cat'\]\)"):
        table_labels(TableParams(path=str(tmp_path / "labels.parquet")), tmp_path)
    with pytest.raises(AssertionError, match="check_params exited 1"):
        run_stages(tmp_path, {"data.source": "table", "data.table.path": str(tmp_path / "labels.parquet")},
                   stages=["check_params"])
    [line] = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert line.startswith("check_params: error: ") and "holds list values" in line


def test_a_header_only_table_and_a_file_column_of_bytes_say_why_in_the_table_s_words(tmp_path):
    """Issue 42: both ended in a message naming download's temporary folder (`.raw.tmp-*/images: No such file`)."""
    (tmp_path / "empty.csv").write_text("file_name,label\n")
    with pytest.raises(DataError, match="empty.csv: no rows, only the names of its columns"):
        table_labels(TableParams(path=str(tmp_path / "empty.csv")), tmp_path)
    for name in ("a.png", "b.png"):
        _image(tmp_path / name, len(name))
    pd.DataFrame({"file_name": [b"a.png", b"b.png"], "label": ["cat", "dog"]}).to_parquet(tmp_path / "bytes.parquet")
    with pytest.raises(DataError) as refused:
        import_table(TableParams(path=str(tmp_path / "bytes.parquet")), tmp_path, tmp_path / "raw")
    assert str(refused.value) == (f"{tmp_path / 'bytes.parquet'}: none of its 2 rows can be used (2 rows: a bytes "
                                  f"value, not a file name; the first: row 2, file \"b'a.png'\")")


def test_check_params_refuses_a_single_class_as_the_data_s_fault(tmp_path, capsys):
    """Issue 42: one class was refused by a message about the adversarial target ("the data has 1 class; a
    targeted attack needs two"), and a header-only table by one about "0 class"."""
    _image(tmp_path / "a.png", 1)
    pd.DataFrame({"file_name": ["a.png"], "label": ["cat"]}).to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(AssertionError, match="check_params exited 1"):
        run_stages(tmp_path, {"data.source": "table", "data.table.path": str(tmp_path / "labels.csv")},
                   stages=["check_params"])
    [line] = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert line == ("check_params: error: data.source table: the data has 1 class ['cat']; a classifier needs at "
                    "least two")


def test_a_table_s_left_out_and_skipped_files_are_counted_by_reason_and_listed_whole_in_csv(tmp_path, caplog):
    """Issue 42: a 1,000,000-row table took 188 s without a word and wrote 118 MB of source.json and data_report.json
    (every left-out row in each). The reports now count by reason and show the first 20; the CSVs hold every one."""
    import logging

    from transferlab.data.raw_layout import SHOWN

    src = tmp_path / "src"
    rows = []
    for number in range(4):
        _image(src / f"{number}.png", number)
        rows += [{"file_name": f"{number}.png", "label": "cat" if number % 2 else "dog"}] * 9  # 8 times too many
    for number in range(22):
        (src / f"text_{number}.png").write_text("not an image")
        rows.append({"file_name": f"text_{number}.png", "label": "cat"})
    pd.DataFrame(rows).to_csv(src / "metadata.csv", index=False)
    caplog.set_level(logging.INFO, "transferlab.progress")
    run_stages(tmp_path, {"data.source": "table", "data.table.path": str(src / "metadata.csv"), "data.image_size": 32})
    assert "download: looking up the table's files: 26 to do" in caplog.text  # 26 names in 58 rows: each once
    raw, prepared = tmp_path / "data" / "raw", tmp_path / "data" / "prepared"
    source = json.loads((raw / "source.json").read_text())
    report = json.loads((prepared / "data_report.json").read_text())
    for record in (source, report):
        assert record["num_left_out"] == 32 and record["left_out_by_reason"] == {"listed twice": 32}
        assert len(record["left_out"]) == SHOWN and record["left_out"][0] == {"file": "0.png", "row": "3",
                                                                              "reason": "listed twice (row 2)"}
    for csv in (raw / "left_out.csv", prepared / "left_out.csv"):
        assert len(pd.read_csv(csv)) == 32
    assert report["num_skipped"] == 22 and report["skipped_by_reason"] == {"not an image (unrecognised format)": 22}
    assert len(report["skipped"]) == SHOWN and len(pd.read_csv(prepared / "skipped.csv")) == 22
    assert report["num_images"] == 4


def _classes_of(tmp_path, labels: list[str]) -> dict[str, list[str]]:
    """Import a table of one image per label; the class each file landed in, by class name."""
    from transferlab.data.raw_layout import write_source_info

    src = tmp_path / "src"
    for index in range(len(labels)):
        _image(src / f"{index}.jpg", index)
    pd.DataFrame({"file_name": [f"{i}.jpg" for i in range(len(labels))], "label": labels}).to_csv(
        src / "metadata.csv", index=False)
    write_source_info(tmp_path / "raw", import_table(TableParams(path=str(src / "metadata.csv")), tmp_path,
                                                     tmp_path / "raw"))
    found: dict[str, list[str]] = {}
    for image in list_raw_images(tmp_path / "raw"):
        found.setdefault(image.class_name, []).append(image.relative.rsplit("/", 1)[1])
    return {name: sorted(files) for name, files in found.items()}


def test_labels_with_spaces_around_them_are_one_class(tmp_path):
    """A spreadsheet's ` cat` and `cat ` are the class `cat`, as check_params' table_labels reads them."""
    assert _classes_of(tmp_path, ["cat", " cat", "cat ", "dog"]) == {"cat": ["0.jpg", "1.jpg", "2.jpg"],
                                                                     "dog": ["3.jpg"]}


def test_class_names_that_differ_only_by_case_stay_two_classes_in_folders_no_file_system_merges(tmp_path):
    """`Cat` and `cat` are two labels: on a case-insensitive file system (macOS, Windows) two folders named so
    would be one, and their images one class."""
    from transferlab.data.raw_layout import class_folder_names

    assert _classes_of(tmp_path, ["Cat", "cat", "Cat"]) == {"Cat": ["0.jpg", "2.jpg"], "cat": ["1.jpg"]}
    folders = class_folder_names(["Cat", "cat"])
    assert len({folder.lower() for folder in folders.values()}) == 2
