"""The evaluate stage asks the model registry first: a refusal leaves the outputs of the last evaluation as they were."""

from __future__ import annotations

import pytest

import hashlib
import json

from tests.conftest import STAGES, run_stages

# The defaults at their smallest sizes: 3 synthetic classes of 4 images, a random-init MobileNetV2 at 0.35 width
TINY = {"data.source": "synthetic", "data.synthetic.images_per_class": 4, "data.synthetic.image_size": 24,
        "data.image_size": 32, "backbone.name": "mobilenet_v2", "backbone.alpha": 0.35, "backbone.weights": "none",
        "compare.backbones": ["mobilenet_v2"], "head.epochs": 1, "fine_tune.epochs": 1, "fine_tune.unfreeze_top": 2,
        "evaluate.gradcam_per_class": 0, "evaluate.gallery_size": 2, "evaluate.min_accuracy": 0.0}


def _register_champion(name: str, classes: list[str], source) -> None:
    """A champion of `name` that classifies `classes`, as an earlier evaluate (of another task) left it."""
    import mlflow

    client = mlflow.MlflowClient()
    client.create_registered_model(name)
    source.mkdir()
    version = client.create_model_version(name, source.as_uri(), tags={"classes": json.dumps(classes)})
    client.set_registered_model_alias(name, "champion", version.version)


def _outputs(paths: list) -> dict[str, tuple[str, int]]:
    """Every file of the outputs (folders walked), with the sha256 of its bytes and its modification time."""
    files = [f for path in paths for f in ([path] if path.is_file() else sorted(path.rglob("*")))]
    return {str(f): (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns) for f in files if f.is_file()}


@pytest.mark.slow  # runs five stages, then evaluate tracked
def test_a_registry_refusal_leaves_the_evaluate_outputs_untouched_and_is_one_line(tmp_path, capsys):
    import mlflow

    from stages import evaluate
    from transferlab.core.params_loader import load_params
    from transferlab.stage_runner import run_stage

    params_file = run_stages(tmp_path, TINY, STAGES[:5])  # untracked: nothing registered yet
    params = load_params(params_file)
    paths = params.paths
    outputs = [tmp_path / paths.evaluate_metrics, tmp_path / paths.summary_metrics,
               tmp_path / paths.evaluate_per_class, tmp_path / paths.evaluate_plots]
    for output in outputs[:3]:  # what the last evaluate wrote
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(f"the last evaluation's {output.name}\n", encoding="utf-8")
    outputs[3].mkdir(parents=True)
    (outputs[3] / "confusion_matrix.png").write_bytes(b"the last evaluation's figure")
    before = _outputs(outputs)
    assert len(before) == 4
    name = params.evaluate.registered_model
    _register_champion(name, ["cat", "dog"], tmp_path / "champion-model")
    capsys.readouterr()

    code = run_stage("evaluate", evaluate.run, ["base", "backbone", "evaluate"], ["--params", str(params_file)])

    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("evaluate: error:")]
    assert code == 2, err[-2000:]
    assert len(errors) == 1 and "Traceback" not in err, err[-2000:]
    assert f"the champion of {name!r} (version 1) classifies 2 classes" in errors[0]
    assert _outputs(outputs) == before  # same files, same bytes, never rewritten
    versions = mlflow.MlflowClient().search_model_versions(f"name = '{name}'")
    assert [str(v.version) for v in versions] == ["1"]  # and nothing was registered
