"""The data_report stage on a small labels table: its report, metrics, thumbnails and gate."""

import json
import shutil

import pandas as pd
import pytest

from tests.conftest import run_stages
from tests.test_table_source import NAMES, kaggle_folder

STAGES = ["download", "preprocess", "extract_features", "data_report"]


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """A Kaggle-style table with a split column, one test photo copied byte for byte into train."""
    root = tmp_path_factory.mktemp("data_report")
    kaggle_folder(root / "src", per_class=6)
    table = pd.read_csv(root / "src" / "labels.csv")
    table["split"] = ["train"] * 12 + ["validation"] * 3 + ["test"] * 3
    shutil.copy(root / "src" / "train" / f"{table.id[15]}.jpg", root / "src" / "train" / "leaked.jpg")
    table.loc[len(table)] = {"id": "leaked", "breed": table.breed[15], "split": "train"}
    table.to_csv(root / "src" / "labels.csv", index=False)
    overrides = {"data.source": "table", "data.table.path": str(root / "src" / "labels.csv"),
                 "data.table.images": str(root / "src" / "train"), "data.table.file_column": "id",
                 "data.table.label_column": "breed", "data.table.suffix": ".jpg", "data.table.split_column": "split",
                 "data.image_size": 32, "backbone.weights": "none"}  # no network here: random-init features
    run_stages(root, overrides, STAGES)
    return root, overrides


def test_the_report_finds_the_leaked_test_image_and_names_every_class(reported):
    root, _ = reported
    metrics = json.loads((root / "metrics" / "data.json").read_text())
    assert metrics["images"] == 19 and metrics["classes"] == 3
    assert metrics["test_images_leaked_from_train"] >= 1 and metrics["test_leakage_fraction"] >= 0.33
    pairs = pd.read_csv(root / "reports" / "data" / "near_duplicates.csv")
    leaked = pairs[(pairs.a.str.endswith("leaked.jpg")) | (pairs.b.str.endswith("leaked.jpg"))]
    assert leaked.similarity.max() > 0.999 and set(leaked.split_a) | set(leaked.split_b) == {"train", "test"}
    page = (root / "reports" / "data" / "report.html").read_text(encoding="utf-8")
    for name in NAMES:
        assert name.replace("/", "&#x2F;") in page or name in page
    assert page.count("data:image/png;base64,") >= 2 and "Near-duplicates and train-test leakage" in page
    issues = pd.read_csv(root / "reports" / "data" / "label_issues.csv")
    assert len(issues) == 19 and set(issues.given) == set(NAMES)


def test_data_gate_stops_the_pipeline_with_one_line_and_keeps_the_report(reported, capsys):
    root, _ = reported
    with pytest.raises(AssertionError, match="data_report exited 1"):
        run_stages(root, {"data.gate": 0.1}, ["data_report"])
    error = capsys.readouterr().err
    assert "data.gate: 1 of 3 test images (33.3%) have a near-duplicate in train, above 10.0%" in error
    assert (root / "reports" / "data" / "report.html").is_file()
