"""Bad params stop every stage with exit 2 and a one-line message naming the key; outputs are untouched."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from transferlab.core.errors import ParamsError
from transferlab.core.params import Params
from transferlab.core.params_loader import load_params, parse_params
from transferlab.workspace import PROJECT_ROOT
from stages import download, preprocess
from transferlab.stage_runner import run_stage


def _write(tmp_path, params: dict | str):
    path = tmp_path / "params.yaml"
    path.write_text(params if isinstance(params, str) else yaml.safe_dump(params), encoding="utf-8")
    return path


BAD_PARAMS = [
    ({"foo": 1}, "foo: unknown key"),
    ({"data": {"imagesize": 64}}, "data.imagesize: unknown key"),
    ({"data": {"source": "ftp"}}, "data.source"),
    ({"data": {"image_size": "big"}}, "data.image_size"),
    ({"data": {"image_size": 8}}, "data.image_size"),
    ({"data": {"val_fraction": 1.5}}, "data.val_fraction"),
    ({"data": {"test_fraction": -0.1}}, "data.test_fraction"),
    ({"data": {"val_fraction": 0.6, "test_fraction": 0.5}}, "data.val_fraction + data.test_fraction"),
    ({"data": {"source": "folder"}}, "data.folder.root"),
    ({"data": {"tfds": {"name": "mnist"}}}, "data.tfds.name"),
    ({"base": {"seed": -1}}, "base.seed"),
    ({"data": {"resize": "stretch"}}, "data.resize"),
    ({"data": {"shard_size": 0}}, "data.shard_size"),
    ({"data": {"jpeg_quality": 101}}, "data.jpeg_quality"),
    ({"mlflow": {"experiment": ""}}, "mlflow.experiment"),
    ({"data": 5}, "data"),
    ({"data": {"synthetic": {"num_classes": 1}}}, "data.synthetic.num_classes"),
    ({"paths": {"raw": ["a"]}}, "paths.raw"),
    # issue 14, finding 1: a path that would replace the workspace, the MLflow store, code, or leave the workspace
    ({"paths": {"raw": "."}}, "paths.raw: '.' is the workspace itself"),
    ({"paths": {"raw": "mlartifacts"}}, "paths.raw: 'mlartifacts' is inside 'mlartifacts'"),
    ({"paths": {"raw": "flows"}}, "paths.raw: 'flows' is inside 'flows'"),
    ({"paths": {"models": ".git/models"}}, "paths.models: '.git/models' is inside '.git'"),
    ({"paths": {"prepared": "mlflow.db"}}, "paths.prepared: 'mlflow.db'"),
    ({"paths": {"raw": "../x"}}, "paths.raw: '../x' leaves the workspace"),
    ({"paths": {"raw": "/tmp/x"}}, "paths.raw: '/tmp/x' is absolute"),
    ({"paths": {"scratch": "../../elsewhere"}}, "paths.scratch: '../../elsewhere' leaves the workspace"),
    ({"paths": {"raw": "data"}}, "paths.raw: 'data' would hold data/params_checked.json"),
    ({"paths": {"raw": "models/raw"}}, "paths.models ('models') and paths.raw ('models/raw') overlap"),
    ({"paths": {"plots": "metrics"}}, "paths.metrics ('metrics') and paths.plots ('metrics') overlap"),
    ({"paths": {"reports": ""}}, "paths.reports: must be a folder inside the workspace"),
    ({"data": {"tfds": {"data_dir": "data/raw/tfds"}}}, "data.tfds.data_dir ('data/raw/tfds') and paths.raw"),
    # every stage's section is validated by every stage, before any work
    ({"backbone": {"name": "alexnet"}}, "backbone.name: unknown backbone 'alexnet'"),
    ({"backbone": {"alpha": 0.3}}, "backbone.alpha"),
    ({"compare": {"backbones": []}}, "compare.backbones"),
    ({"compare": {"backbones": ["resnet50"]}}, "compare.backbones: must include backbone.name"),
    ({"head": {"dropout": 1.0}}, "head.dropout"),
    ({"head": {"batch_size": 0}}, "head.batch_size"),
    ({"fine_tune": {"unfreeze_top": -1}}, "fine_tune.unfreeze_top"),
    ({"fine_tune": {"learning_rate": 0.5}}, "fine_tune.learning_rate"),
    ({"fine_tune": {"flip_tta": "sometimes"}}, "fine_tune.flip_tta"),
    ({"evaluate": {"top_k": 0}}, "evaluate.top_k"),
    ({"evaluate": {"registered_model": "my model"}}, "evaluate.registered_model"),
    ({"adversarial": {"epsilons": [0, -1]}}, "adversarial.epsilons: -1.0 is outside 0..255"),
    ({"adversarial": {"epsilons": []}}, "adversarial.epsilons: must list at least one budget"),
    ({"adversarial": {"steps": 0}}, "adversarial.steps"),
    ({"adversarial": {"imagenet": {"target_class": 1000}}}, "adversarial.imagenet.target_class"),
    # issue 31: NaN and infinity are refused by every float setting, a list's items included
    ({"adversarial": {"ideal_tv_weight": float("inf")}}, "adversarial.ideal_tv_weight: Input should be a finite"),
    ({"fine_tune": {"learning_rate": float("nan")}}, "fine_tune.learning_rate: Input should be a finite"),
    ({"adversarial": {"epsilons": [0, float("-inf")]}}, "adversarial.epsilons.1: Input should be a finite"),
    ({"evaluate": {"max_class_regression": float("nan")}}, "evaluate.max_class_regression: Input should be a finite"),
    ({"head": {"l2": float("inf")}}, "head.l2"),
    # a value that fits no form of a setting names every form allowed, under the setting's own key
    ({"head": {"l2": "abc"}}, "head.l2: Input should be 'probe' or a valid number (got 'abc')"),
    ({"evaluate": {"min_test_images": -1}}, "evaluate.min_test_images"),
    ({"evaluate": {"max_class_regression": 1.5}}, "evaluate.max_class_regression"),
    ({"evaluate": {"release_images": -1}}, "evaluate.release_images"),
    ("- just\n- a list\n", "expected a mapping"),
    ("data: {source: [unclosed\n", "not valid YAML"),
    ("head:\n  epochs: 3\nhead:\n  epochs: 4\n", "line 3 is not valid YAML (key 'head' is given twice)"),
]


@pytest.mark.parametrize(("params", "expected"), BAD_PARAMS)
def test_bad_params_exit_2_name_the_key_and_touch_nothing(tmp_path, capsys, params, expected):
    params_file = _write(tmp_path, params)
    output = tmp_path / "data" / "prepared"
    output.mkdir(parents=True)
    (output / "manifest.csv").write_text("previous result")
    for stage, body in (("download", download.run), ("preprocess", preprocess.run)):
        code = run_stage(stage, body, ["data"], ["--params", str(params_file)])
        message = capsys.readouterr().err.strip()
        assert code == 2, message
        assert expected in message
        assert "\n" not in message and message.startswith(f"{stage}: error: ")
    assert (output / "manifest.csv").read_text() == "previous result"
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["prepared"]


def test_enum_errors_list_the_allowed_values(tmp_path):
    with pytest.raises(ParamsError, match="'tfds', 'folder', 'table' or 'synthetic'"):
        load_params(_write(tmp_path, {"data": {"source": "ftp"}}))
    with pytest.raises(ParamsError, match="allowed keys here: .*image_size"):
        load_params(_write(tmp_path, {"data": {"imagesize": 1}}))


def test_missing_folder_root_is_a_params_error(tmp_path, capsys):
    params_file = _write(tmp_path, {"data": {"source": "folder", "folder": {"root": "no/such/dir"}}})
    assert run_stage("download", download.run, ["data"], ["--params", str(params_file), "--no-track"]) == 2
    assert "data.folder.root: folder not found" in capsys.readouterr().err


def test_project_params_file_is_valid_and_complete():
    params = load_params(PROJECT_ROOT / "params.yaml")
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    # Every default is spelled out in params.yaml, so `dvc exp run -S` can address each key.
    assert params.model_dump() == Params.model_validate(raw).model_dump()
    assert set(raw) == set(Params.model_fields)
    assert set(raw["data"]) == set(type(params.data).model_fields)


def test_defaults_apply_when_sections_are_absent():
    params = parse_params({"base": {"seed": 7}})
    assert params.base.seed == 7 and params.data.image_size == 224


def test_cli_reports_bad_params_without_traceback(tmp_path):
    params_file = _write(tmp_path, {"data": {"image_size": 0}})
    result = subprocess.run([sys.executable, "-m", "stages.preprocess", "--params", str(params_file)],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "data.image_size" in result.stderr.strip().splitlines()[-1]


def test_a_symlink_out_of_the_workspace_is_refused_not_followed(tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("someone else's file")
    workspace = tmp_path / "ws"
    (workspace / "data").mkdir(parents=True)
    (workspace / "data" / "raw").symlink_to(outside, target_is_directory=True)
    params_file = _write(workspace, {"data": {"source": "synthetic"}})
    code = run_stage("download", download.run, ["data"], ["--params", str(params_file), "--no-track"])
    message = capsys.readouterr().err.strip()
    assert code == 2 and "data/raw: resolves to" in message and "outside the workspace" in message
    assert [p.name for p in outside.iterdir()] == ["keep.txt"]


def test_a_params_file_that_is_not_utf8_is_a_one_line_error(tmp_path):
    (tmp_path / "params.yaml").write_bytes(b"\xff\xfe\x00head: {}")
    with pytest.raises(ParamsError, match="params.yaml: not UTF-8 text"):
        load_params(tmp_path / "params.yaml")


def _numeric_keys(model: type = Params, prefix: str = ""):
    """(dotted key, whether a list holds the numbers) for every int and float setting of the schema, nullable ones
    included; the compare.alpha mapping's values are checked against the backbone table instead."""
    import typing

    from pydantic import BaseModel

    def kinds(annotation) -> set:
        found = {annotation} & {int, float}
        for argument in typing.get_args(annotation):
            found |= kinds(argument)
        return found

    for name, field in model.model_fields.items():
        key, annotation = f"{prefix}{name}", field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _numeric_keys(annotation, f"{key}.")
        elif kinds(annotation) and typing.get_origin(annotation) is not dict:
            yield key, typing.get_origin(annotation) is list


NUMERIC_KEYS = list(_numeric_keys())


def _with(key: str, value) -> dict:
    raw: dict = {}
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return raw


@pytest.mark.parametrize(("key", "listed"), NUMERIC_KEYS, ids=[key for key, _ in NUMERIC_KEYS])
def test_every_numeric_setting_has_an_upper_bound_and_takes_no_boolean(key, listed):
    """Issue 42: `adversarial.replication_step_size: 1e300` gave a report of NaN and inf; `base.seed: true` was the
    seed 1. Every int and float key of params.yaml refuses both, naming itself."""
    for value in (1e300, True, 2**62):
        with pytest.raises(ParamsError, match=rf"^params\.yaml: {re.escape(key)}\b"):
            parse_params(_with(key, [value] if listed else value))


def test_the_numeric_keys_walked_are_those_of_params_yaml():
    keys = {key for key, _ in NUMERIC_KEYS}
    assert {"base.seed", "adversarial.replication_step_size", "adversarial.ideal_tv_weight", "adversarial.epsilons",
            "data.gate", "evaluate.min_test_images", "head.l2", "fine_tune.adversarial.epsilon"} <= keys
    assert len(keys) > 50
