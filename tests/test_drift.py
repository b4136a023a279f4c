"""Drift: the two tests on synthetic features, and `transferlab drift` on a hand-made workspace (a features cache
written as extract_features writes it, random-init MobileNetV2 at 32 px, synthetic PNGs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from transferlab.quality.drift import DriftResult, auc_threshold, classifier_auc, compare, mmd_test


def _gaussians(seed: int, shift: float = 0.0, sizes: tuple[int, int] = (400, 300), width: int = 32):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(sizes[0], width)), rng.normal(size=(sizes[1], width)) + shift


def test_the_same_distribution_is_no_drift_by_either_test():
    result = compare(*_gaussians(1), seed=0)
    assert result.auc < 0.55 and not result.drifted
    assert result.p_value > 0.05 and not result.mmd_drifted
    assert result.verdict().startswith("drift: no (classifier AUC ") and "disagrees" not in result.verdict()
    assert (result.reference_count, result.current_count) == (400, 300)


def test_a_shifted_mean_is_drift_by_both_tests():
    result = compare(*_gaussians(2, shift=0.5), seed=0)
    assert result.auc > 0.9 and result.drifted
    assert result.p_value < 0.05 and result.mmd > 0
    assert result.verdict() == (f"drift: yes (classifier AUC {result.auc:.2f} > {result.auc_threshold:.2f}; "
                                f"MMD p = 0.005 < 0.05; 300 new vs 400 training images)")


def test_on_a_small_sample_the_auc_must_beat_what_shuffled_labels_reach():
    """20 new images of the same distribution: 0.55 alone called drift in 47 % of draws on the real photos."""
    reference, current = _gaussians(4, sizes=(300, 20))
    threshold = auc_threshold(reference, current, seed=0)
    assert threshold > 0.6  # 40 rows: a classifier on noise reaches well past 0.55
    assert compare(reference, current, seed=0).auc_threshold == threshold
    assert auc_threshold(*_gaussians(5, sizes=(800, 600)), seed=0) == 0.55  # 1,200 rows: 0.55 alone, as Evidently
    shifted = compare(*_gaussians(6, shift=1.0, sizes=(300, 20)), seed=0)
    assert shifted.drifted and shifted.auc > shifted.auc_threshold


def test_the_verdict_says_when_mmd_disagrees():
    assert DriftResult(0.6, 0.001, 0.4, 100, 20).verdict() == (
        "drift: yes (classifier AUC 0.60 > 0.55; MMD disagrees: p = 0.400 >= 0.05; 20 new vs 100 training images)")
    assert DriftResult(0.5, 0.02, 0.01, 100, 20).verdict() == (
        "drift: no (classifier AUC 0.50 <= 0.55; MMD disagrees: p = 0.010 < 0.05; 20 new vs 100 training images)")


def test_an_auc_near_the_threshold_is_never_shown_as_equal_to_it():
    assert "classifier AUC 0.552 > 0.55;" in DriftResult(0.552, 0.0, 0.5, 50, 50).verdict()
    assert "classifier AUC 0.5496 <= 0.55;" in DriftResult(0.5496, 0.0, 0.5, 50, 50).verdict()
    assert "classifier AUC 0.55 <= 0.55;" in DriftResult(0.55, 0.0, 0.5, 50, 50).verdict()


def test_both_tests_are_determined_by_the_seed():
    reference, current = _gaussians(3, shift=0.1, sizes=(700, 300))
    assert compare(reference, current, seed=5) == compare(reference, current, seed=5)
    # the seed picks the subsample (700 -> 300 rows for the classifier, -> 500 for MMD) and the permutations
    assert compare(reference, current, seed=5) != compare(reference, current, seed=6)


def test_the_classifier_fits_both_sets_at_the_smaller_size(monkeypatch):
    """2000 training rows against 40 new ones: the classifier sees 40 of each, the 40 drawn from the training rows."""
    import sklearn.model_selection

    seen, real = {}, sklearn.model_selection.cross_val_predict

    def spy(model, rows, labels, **kwargs):
        seen.update(rows=rows, labels=labels)
        return real(model, rows, labels, **kwargs)

    monkeypatch.setattr(sklearn.model_selection, "cross_val_predict", spy)
    reference, current = _gaussians(4, sizes=(2000, 40), width=8)
    classifier_auc(reference, current, seed=0)
    assert np.bincount(seen["labels"]).tolist() == [40, 40]
    training_rows = {tuple(row) for row in reference}
    assert all(tuple(row) in training_rows for row in seen["rows"][seen["labels"] == 0])
    np.testing.assert_array_equal(seen["rows"][seen["labels"] == 1], current)


def _brute_force_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    mean, std = x.mean(axis=0), x.std(axis=0)
    x, y = (x - mean) / std, (y - mean) / std
    pooled = np.concatenate([x, y])
    distances = np.array([[np.linalg.norm(a - b) for b in pooled] for a in pooled])
    bandwidth = np.median(distances[np.triu_indices(len(pooled), k=1)])
    kernel = np.exp(-distances ** 2 / (2 * bandwidth ** 2))
    n, m = len(x), len(y)
    within_x = sum(kernel[i, j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    within_y = sum(kernel[i, j] for i in range(n, n + m) for j in range(n, n + m) if i != j) / (m * (m - 1))
    return within_x + within_y - 2 * kernel[:n, n:].mean()


def test_mmd_is_the_unbiased_estimator_with_a_permutation_p_value():
    reference, current = _gaussians(5, shift=0.3, sizes=(25, 18), width=4)
    mmd, p_value = mmd_test(reference, current, seed=0, permutations=39)
    assert mmd == pytest.approx(_brute_force_mmd2(reference, current), rel=1e-9)
    assert p_value * 40 == pytest.approx(round(p_value * 40)) and 1 / 40 <= p_value <= 1


def test_mmd_subsamples_each_set_to_its_cap():
    reference, current = _gaussians(6, sizes=(60, 60), width=4)
    whole = mmd_test(reference, current, seed=0)
    assert mmd_test(reference, current, seed=0, max_per_set=60) == whole  # the cap not reached: every row
    assert mmd_test(reference, current, seed=0, max_per_set=30) != whole


# `transferlab drift` on a hand-made workspace

IMAGE_SIZE, TRAINING_IMAGES = 32, 30


def _params_text(experiment: str) -> str:
    return (f"base: {{seed: 42}}\ndata: {{image_size: {IMAGE_SIZE}}}\n"
            "backbone: {name: mobilenet_v2, alpha: 0.35, weights: none, batch_size: 16}\n"
            f"mlflow: {{experiment: {experiment}}}\n")


def _smooth_images(folder: Path, count: int, seed: int) -> list[Path]:
    """Soft grey-blue gradients with a little noise: the 'training' look."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng, ramp = np.random.default_rng(seed), np.linspace(0, 1, 40)[None, :, None]
    paths = []
    for index in range(count):
        tint = rng.uniform(0.3, 0.6, size=3) * np.array([0.8, 0.9, 1.0])
        pixels = 255 * (tint * (0.6 + 0.4 * ramp) + rng.normal(0, 0.03, size=(40, 40, 3)))
        paths.append(folder / f"smooth_{index:03d}.png")
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(paths[-1])
    return paths


def _striped_images(folder: Path, count: int, seed: int) -> None:
    """Saturated red and yellow stripes: nothing like the training images."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        period = int(rng.integers(3, 8))
        stripes = (np.arange(40)[:, None] // period % 2).repeat(40, axis=1)[..., None]
        pixels = np.where(stripes, [250, 30, 20], [240, 220, 10]) + rng.normal(0, 8, size=(40, 40, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"stripes_{index:03d}.png")


def _write_features_cache(root: Path, params, features: np.ndarray, backbone: str = "mobilenet_v2") -> Path:
    """The layout extract_features leaves: one .npz per shard (features, labels, keys) and meta.json."""
    from transferlab.core.backbones import weights_identity
    from transferlab.modeling.features import cache_components, cache_key

    folder = root / params.paths.features_of(params.backbone.name)
    folder.mkdir(parents=True, exist_ok=True)
    count = len(features)
    np.savez(folder / "train-00000.npz", features=features, labels=np.arange(count) % 2,
             keys=np.array([f"train/{index}.png" for index in range(count)]))
    cfg = params.backbone_named(params.backbone.name).model_copy(update={"name": backbone})
    components = cache_components(cfg, IMAGE_SIZE, "0" * 64, weights_identity(cfg.weights, root), params.base.seed)
    meta = {"cache_key": cache_key(components), "components": components, "counts": {"train": count},
            "feature_width": features.shape[1]}
    (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def drift_workspace(tmp_path_factory):
    """params.yaml and a features cache of 30 smooth training images, embedded by `embed_files`."""
    from transferlab.core.params_loader import load_params
    from transferlab.quality.drift_check import embed_files

    root = tmp_path_factory.mktemp("drift-ws")
    (root / "params.yaml").write_text(_params_text("drift-test"), encoding="utf-8")
    params = load_params(root / "params.yaml")
    embedded = embed_files(_smooth_images(root / "training_images", TRAINING_IMAGES, seed=0), params, root, 42)
    _write_features_cache(root, params, embedded.features)
    return root


def test_new_images_are_embedded_as_the_pipeline_embeds_its_training_images(drift_workspace, tmp_path):
    """Preprocess' JPEG in a shard, extracted by `shard_features`: the same features as `embed_files` gives the
    original files. Without the JPEG round trip they differ, and a classifier learns the difference."""
    import io

    from transferlab.core.params_loader import load_params
    from transferlab.data.prepared import ShardWriter, shard_files
    from transferlab.data.preprocess import process_file
    from transferlab.modeling.features import shard_features
    from transferlab.quality.drift_check import embed_files

    params = load_params(drift_workspace / "params.yaml")
    paths = _smooth_images(tmp_path / "images", 12, seed=11)
    writer = ShardWriter(tmp_path, "train", 100)
    for index, path in enumerate(paths):
        writer.write(process_file(str(path), IMAGE_SIZE, "squash", params.data.jpeg_quality).jpeg, 0, str(index))
    writer.close()
    cfg = params.backbone_named("mobilenet_v2")
    (_, npz), = shard_features(shard_files(tmp_path, "train"), {"train-00000.tfrecord": 12}, cfg, IMAGE_SIZE,
                               drift_workspace, 42, frozen=False)
    with np.load(io.BytesIO(npz)) as arrays:
        extracted = arrays["features"][np.argsort(arrays["keys"].astype(int))]
    scale = np.abs(extracted).max()
    np.testing.assert_allclose(embed_files(paths, params, drift_workspace, 42).features, extracted,
                               atol=1e-5 * scale)
    direct = embed_files(paths, params, drift_workspace, 42, stored_as_prepared=False).features
    assert np.abs(direct - extracted).max() > 1e-3 * scale


def _drift(folder: Path, root: Path, *extra: str) -> int:
    from transferlab.cli import main

    return main(["drift", str(folder), "--params", str(root / "params.yaml"), *extra])


def test_drift_prints_one_verdict_line_writes_the_report_and_logs_the_run(drift_workspace, tmp_path, capsys,
                                                                          caplog):
    import mlflow

    folder = tmp_path / "new"
    _striped_images(folder / "batch", 20, seed=1)
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "report"
    code = _drift(folder, drift_workspace, "--out", str(out))
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.splitlines() == [captured.out.strip()]
    assert captured.out.startswith("drift: yes (classifier AUC ") and "20 new vs 30 training images" in captured.out
    assert "1 of 21 image files could not be decoded" in caplog.text and "broken.png" in caplog.text  # on stderr
    record = json.loads((out / "drift.json").read_text())
    assert record["verdict"] == captured.out.strip() and record["drifted"] is True and record["auc"] > 0.9
    assert record["counts"] == {"training": 30, "new": 20, "image_files": 21, "undecodable": 1}
    assert record["backbone"] == "mobilenet_v2" and record["folder"] == str(folder.resolve())
    assert record["undecodable"][0]["file"].endswith("broken.png")
    assert record["verdict"] in (out / "report.md").read_text()
    runs = mlflow.search_runs(experiment_names=["drift-test"], filter_string="attributes.run_name = 'drift'")
    assert len(runs) == 1 and runs.loc[0, "metrics.drifted"] == 1.0
    assert runs.loc[0, "metrics.drift_auc"] == pytest.approx(record["auc"])
    assert runs.loc[0, "params.folder"] == str(folder) and runs.loc[0, "params.backbone"] == "mobilenet_v2"
    artifacts = mlflow.MlflowClient().list_artifacts(runs.loc[0, "run_id"], "drift")
    assert sorted(Path(artifact.path).name for artifact in artifacts) == ["drift.json", "report.md"]


def test_the_default_report_goes_to_the_reports_folder_of_the_workspace(drift_workspace, tmp_path, capsys):
    folder = tmp_path / "new"
    _smooth_images(folder, 12, seed=7)
    assert _drift(folder, drift_workspace) == 0
    record = json.loads((drift_workspace / "reports" / "drift" / "drift.json").read_text())
    assert record["verdict"] == capsys.readouterr().out.strip() and record["counts"]["new"] == 12


def test_run_drift_writes_the_report_and_leaves_mlflow_to_its_caller(drift_workspace, tmp_path):
    import os

    from transferlab.core.params_loader import load_params
    from transferlab.quality.drift_check import run_drift

    _striped_images(tmp_path / "new", 10, seed=4)
    result = run_drift(tmp_path / "new", load_params(drift_workspace / "params.yaml"), drift_workspace, tmp_path / "out")
    assert result.drifted and result.current_count == 10
    assert json.loads((tmp_path / "out" / "drift.json").read_text())["verdict"] == result.verdict()
    assert not Path(os.environ["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///")).exists()  # this test's store


def test_a_folder_without_images_is_one_line_and_exit_2(drift_workspace, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    assert _drift(empty, drift_workspace) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [f"transferlab drift: error: {empty}: holds 0 image files; drift needs at "
                                         f"least 10"]


def test_a_folder_of_one_image_says_so_in_the_singular(drift_workspace, tmp_path, capsys):
    """Hostile round of issue 42: "holds 1 image files" (the round's `plural` had missed this line)."""
    _smooth_images(tmp_path / "one", 1, seed=3)
    assert _drift(tmp_path / "one", drift_workspace) == 2
    assert f"{tmp_path / 'one'}: holds 1 image file; drift needs at least 10" in capsys.readouterr().err


def test_a_folder_of_mostly_undecodable_files_is_exit_2(drift_workspace, tmp_path, capsys):
    folder = tmp_path / "broken"
    _smooth_images(folder, 4, seed=3)
    for index in range(8):
        (folder / f"broken_{index}.jpg").write_bytes(b"\xff\xd8 truncated")
    assert _drift(folder, drift_workspace) == 2
    assert f"{folder}: only 4 of 12 image files could be decoded" in capsys.readouterr().err


def test_without_cached_features_it_says_to_run_the_pipeline(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text(_params_text("drift-missing"), encoding="utf-8")
    _smooth_images(tmp_path / "new", 10, seed=2)
    assert _drift(tmp_path / "new", tmp_path) == 1
    line = capsys.readouterr().err.strip()
    assert line.startswith("transferlab drift: error: ") and "dvc repro extract_features@mobilenet_v2" in line
    assert "\n" not in line


def test_features_of_another_backbone_are_refused(tmp_path, capsys):
    from transferlab.core.params_loader import load_params

    (tmp_path / "params.yaml").write_text(_params_text("drift-other"), encoding="utf-8")
    params = load_params(tmp_path / "params.yaml")
    _write_features_cache(tmp_path, params, np.zeros((12, 1280), np.float32), backbone="mobilenet")
    _smooth_images(tmp_path / "new", 10, seed=2)
    assert _drift(tmp_path / "new", tmp_path) == 1
    line = capsys.readouterr().err.strip()
    assert "computed with backbone 'mobilenet'" in line and "'mobilenet_v2'" in line


@pytest.mark.timeout(60)
def test_special_files_in_a_drift_folder_are_listed_for_the_report_never_opened(tmp_path):
    """Issue 31: drift dropped what predict's walk left out; the report now lists it."""
    from tests.test_folder_source import _special_files
    from transferlab.quality.drift_check import MIN_IMAGES, image_files

    _special_files(tmp_path / "new")
    for index in range(MIN_IMAGES):
        (tmp_path / "new" / f"{index}.png").write_bytes(b"decoded later")
    paths, left_out = image_files(tmp_path / "new")
    assert len(paths) == MIN_IMAGES
    assert sorted(entry["error"].split(",")[0] for entry in left_out) == ["a FIFO (named pipe)",
                                                                         "a character device", "a socket"]


def test_features_of_random_weights_under_another_seed_are_refused_as_another_embedding(tmp_path):
    """With `weights: none` the seed makes the network: a cache from seed 42 compared with images embedded under
    seed 7 would measure the change of network, not of data (issue 42: the seed was not among the checked keys)."""
    from transferlab.core.errors import DataError
    from transferlab.core.params_loader import load_params
    from transferlab.quality.drift_check import check_same_embedding

    (tmp_path / "params.yaml").write_text(_params_text("drift-seed"), encoding="utf-8")
    params = load_params(tmp_path / "params.yaml")
    folder = _write_features_cache(tmp_path, params, np.zeros((4, 8), np.float32))
    meta = json.loads((folder / "meta.json").read_text())
    check_same_embedding(meta, params, tmp_path, 42)
    with pytest.raises(DataError, match="computed with init_seed 42, params.yaml now gives 7"):
        check_same_embedding(meta, params, tmp_path, 7)


def _tree(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@pytest.mark.parametrize("where", ["the images' folder", "a folder holding it", "a user's folder", ".",
                                   "a link to nowhere", "a path under a file"])
def test_an_out_folder_that_is_not_ours_is_refused_in_one_line_and_left_untouched(drift_workspace, tmp_path,
                                                                                    monkeypatch, capsys, where):
    """Issue 42: the report folder was swapped in whole, so `--out` naming the images deleted them and any
    folder named was emptied; `--out .` was a traceback. Its hostile round: a symbolic link to nowhere was a
    FileExistsError traceback, and a path under a file an error, both after the whole measurement."""
    import mlflow

    folder, mine = tmp_path / "new", tmp_path / "mine"
    _striped_images(folder, 10, seed=5)
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's own file")
    monkeypatch.chdir(mine)
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    out = {"the images' folder": folder, "a folder holding it": tmp_path, "a user's folder": mine,
           ".": Path("."), "a link to nowhere": tmp_path / "link", "a path under a file": mine / "notes.txt" / "sub"
           }[where]
    before = _tree(tmp_path)
    assert _drift(folder, drift_workspace, "--out", str(out)) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"transferlab drift: error: --out {out}: ")
    assert _tree(tmp_path) == before
    assert mlflow.search_runs(experiment_names=["drift-test"], filter_string="attributes.run_name = 'drift'",
                              output_format="list") == []  # refused before the run


def test_out_is_written_into_when_new_empty_or_an_earlier_reports_and_nothing_else_in_it_is_touched(
        drift_workspace, tmp_path, monkeypatch, capsys):
    """`--out .` in an empty folder writes the report there; a second run overwrites only the report's files."""
    from transferlab.core.output_folder import MARKER

    folder = tmp_path / "new"
    _smooth_images(folder, 10, seed=8)
    here = tmp_path / "reports-here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert _drift(folder, drift_workspace, "--out", ".") == 0
    first = json.loads((here / "drift.json").read_text())
    assert first["verdict"] == capsys.readouterr().out.strip()
    assert sorted(_tree(here)) == sorted([MARKER, "drift.json", "report.md"])
    (here / "mine.txt").write_text("added by the user since")
    _striped_images(folder, 10, seed=9)  # the folder changed: the second report differs
    assert _drift(folder, drift_workspace, "--out", str(here)) == 0
    assert json.loads((here / "drift.json").read_text())["counts"]["new"] == 20
    assert (here / "mine.txt").read_text() == "added by the user since"


def test_the_projects_report_folder_from_before_the_marker_is_still_written(drift_workspace, tmp_path):
    """<paths.reports>/drift is the project's: a report an earlier version left there (no marker) is replaced."""
    from transferlab.core.output_folder import MARKER
    from transferlab.core.params_loader import load_params
    from transferlab.quality.drift_check import default_out_dir, report_dir

    params = load_params(drift_workspace / "params.yaml")
    default = default_out_dir(params, drift_workspace)
    default.mkdir(parents=True, exist_ok=True)
    (default / MARKER).unlink(missing_ok=True)
    (default / "drift.json").write_text("{}")
    assert report_dir(None, tmp_path / "new", params, drift_workspace) == default
