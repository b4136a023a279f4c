"""The whole pipeline on labels tables as Kaggle and Hugging Face ship them, with class names that are not
identifiers (spaces, accents, a slash): they reach classes.json, predict's output and the served model unchanged."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import STAGES, run_stages
from transferlab.data.sources.synthetic import synthetic_image

pytestmark = pytest.mark.slow
NAMES = ["golden retriever", "Škoda / Octavia", "café crème"]
WHOLE_PIPELINE = ["check_params", "download", "preprocess", "extract_features", "data_report", *STAGES[3:],
                  "adversarial_report"]
SMALL = {"data.image_size": 32, "backbone.weights": "none",  # size knobs; no network here: random-init weights
         "adversarial.num_images": 4, "adversarial.epsilons": [0, 8], "adversarial.steps": 2,
         "adversarial.ideal_steps": 4, "adversarial.ideal_snapshot_every": 2, "adversarial.replication_steps": 3,
         "evaluate.min_test_images": 0}


def _write(path, class_index: int, rng) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(synthetic_image(class_index, len(NAMES), 32, rng)).save(path, format="JPEG", quality=92)


def kaggle_labels(root, per_class: int = 10) -> dict:
    """train/<id>.jpg and labels.csv (`id,breed`), as Kaggle's dog-breed competition ships them."""
    rng, rows = np.random.default_rng(0), []
    for number in range(per_class * len(NAMES)):
        _write(root / "train" / f"{number:05x}.jpg", number % len(NAMES), rng)
        rows.append({"id": f"{number:05x}", "breed": NAMES[number % len(NAMES)]})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return {"data.source": "table", "data.table.path": str(root / "labels.csv"),
            "data.table.images": str(root / "train"), "data.table.file_column": "id",
            "data.table.label_column": "breed", "data.table.suffix": ".jpg"}


def hf_metadata(root, per_class: int = 8) -> dict:
    """Hugging Face imagefolder: metadata.csv beside the images, `file_name` relative to it, one row unlabeled
    and one naming a file that is not there."""
    rng, rows = np.random.default_rng(1), []
    for number in range(per_class * len(NAMES)):
        split = "test" if number % 4 == 3 else "train"
        _write(root / split / f"{number}.jpg", number % len(NAMES), rng)
        rows.append({"file_name": f"{split}/{number}.jpg", "label": NAMES[number % len(NAMES)], "split": split})
    rows += [{"file_name": "train/0.jpg", "label": None, "split": "train"},
             {"file_name": "train/missing.jpg", "label": NAMES[0], "split": "train"}]
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return {"data.source": "table", "data.table.path": str(root / "metadata.csv"), "data.table.split_column": "split"}


@pytest.fixture(scope="module")
def kaggle_pipeline_registered_even_if_weak(tmp_path_factory):
    """Random-init features on 30 images may stay under evaluate.min_accuracy: 0 lets the model be served.
    The run tracks into a backend of its own, which outlives the per-test MLflow isolation: (root, its URI)."""
    import mlflow

    root = tmp_path_factory.mktemp("kaggle")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    overrides = {**kaggle_labels(root / "src"), **SMALL, "evaluate.min_accuracy": 0.0}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        run_stages(root, overrides, WHOLE_PIPELINE, track=True)
    return root, uri


def test_kaggle_labels_run_the_whole_pipeline_and_keep_the_class_names(kaggle_pipeline_registered_even_if_weak):
    root, _ = kaggle_pipeline_registered_even_if_weak
    classes = json.loads((root / "models" / "fine_tuned" / "classes.json").read_text(encoding="utf-8"))
    assert [c["name"] for c in classes] == sorted(NAMES)
    per_class = pd.read_csv(root / "metrics" / "evaluate_per_class.csv")
    assert sorted(per_class["class"]) == sorted(NAMES)
    report = (root / "reports" / "adversarial" / "report.md").read_text(encoding="utf-8")
    assert "café crème" in report  # adversarial.target auto: the first class, as the data names it
    assert "café crème" in (root / "reports" / "data" / "report.html").read_text(encoding="utf-8")


def test_predict_and_the_served_model_answer_with_the_class_names_unchanged(kaggle_pipeline_registered_even_if_weak):
    import mlflow

    from transferlab.evaluation.predict import load_model, predict_files

    root, uri = kaggle_pipeline_registered_even_if_weak
    mlflow.set_tracking_uri(uri)  # the autouse isolation gave this test an empty backend
    photo = root / "src" / "train" / "00001.jpg"
    [local] = predict_files(load_model(str(root / "models" / "fine_tuned")), [str(photo)], top_k=3)
    assert sorted(entry["class"] for entry in local["top"]) == sorted(NAMES)
    served = mlflow.pyfunc.load_model("models:/transferlab@champion")
    [answer] = served.predict(pd.DataFrame({"image": [photo.read_bytes()]}), params={"top_k": 3}).to_dict("records")
    assert sorted(answer["top_classes"]) == sorted(NAMES)
    by_class = dict(zip(answer["top_classes"], answer["top_probabilities"]))
    np.testing.assert_allclose([by_class[e["class"]] for e in local["top"]], [e["probability"] for e in local["top"]],
                               rtol=1e-4, atol=1e-6)


def test_hf_metadata_runs_to_evaluation_with_its_own_split_and_reports_the_rows_it_could_not_use(tmp_path):
    """Up to evaluate: the reports' handling of class names is the Kaggle pipeline's test above."""
    overrides = {**hf_metadata(tmp_path / "src"), **SMALL, "evaluate.min_accuracy": 0.0}
    run_stages(tmp_path, overrides, [stage for stage in WHOLE_PIPELINE if not stage.endswith("_report")])
    report = json.loads((tmp_path / "data" / "prepared" / "data_report.json").read_text(encoding="utf-8"))
    reasons = sorted((entry["file"], entry["reason"].split(" in ")[0]) for entry in report["left_out"])
    assert reasons == [("train/0.jpg", "no label"), ("train/missing.jpg", "file not found")]
    assert report["totals"]["test"] == 6 and report["classes"] == sorted(NAMES)
    assert json.loads((tmp_path / "metrics" / "evaluate.json").read_text())["fine_tuned"]["n"] == 6
