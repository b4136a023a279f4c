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
    shutil.rmtree(root / "reports" / "data")  # the report must come from this run, not the fixture's
    with pytest.raises(AssertionError, match="data_report exited 1"):
        run_stages(root, {"data.gate": 0.1}, ["data_report"])
    error = capsys.readouterr().err
    assert "data.gate: 1 of 3 test images (33.3%) have a near-duplicate in train, above 10.0%" in error
    assert (root / "reports" / "data" / "report.html").is_file()


def _quality_with_leakage(images: int, of: int):
    from types import SimpleNamespace

    return SimpleNamespace(leakage={"images": images, "of": of, "fraction": images / of})


def test_data_gate_lets_a_leakage_at_its_limit_pass_and_stops_one_above():
    """`data.gate: 0.25` means "more than a quarter of the test images" (params.yaml): a quarter passes."""
    from transferlab.core.errors import DataError
    from transferlab.quality.report import check_gate

    check_gate(_quality_with_leakage(1, 4), 0.25, "report.html")
    check_gate(_quality_with_leakage(4, 4), None, "report.html")  # null: report only
    with pytest.raises(DataError, match=r"^data.gate: 2 of 4 test images \(50.0%\) have a near-duplicate"):
        check_gate(_quality_with_leakage(2, 4), 0.25, "report.html")


def test_outliers_are_measured_against_the_training_split_only():
    """20 test images far from every training image are outliers; centres and spreads taken from every split would
    have moved towards them and hidden them (issue 42)."""
    import numpy as np

    from transferlab.quality.neighbours import Calibration, Whitening
    from transferlab.quality.report import Pooled, analyse

    rng = np.random.default_rng(0)
    train_labels = np.repeat([0, 1], 30)
    train = rng.normal(size=(60, 4)) + np.eye(2, 4)[train_labels] * 5
    far = rng.normal(size=(20, 4)) + 40.0
    data = Pooled(np.concatenate([train, far]), np.concatenate([train_labels, np.zeros(20, int)]),
                  np.array([f"img{i:03d}.jpg" for i in range(80)]), np.array(["train"] * 60 + ["test"] * 20))
    manifest = pd.DataFrame({"path": data.keys, "class_name": np.where(data.labels == 0, "a", "b"),
                             "split": data.splits, "width": 32, "height": 32})
    calibration = Calibration(0.99, np.ones(4), np.zeros(4), 0.05)
    quality = analyse(data, manifest, ["a", "b"], Whitening.fit(train), calibration, None, seed=0)
    distances = quality.outliers.set_index("file").distance
    assert (distances[data.keys[60:]] > 2).all() and (distances[data.keys[:60]] < 2).mean() > 0.9
