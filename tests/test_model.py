"""Model files load in Keras safe mode: a file carrying Python code is refused with one clear line."""

from __future__ import annotations

import subprocess
import sys

import keras
import pytest

from tests.conftest import PROJECT_ROOT
from transferlab.core.errors import UserError
from transferlab.modeling.assembly import load_keras


def _lambda_model(path):
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)  # arbitrary code, stored as bytecode
    keras.Model(inputs, outputs).save(path)


def test_a_model_with_python_code_is_refused(tmp_path):
    _lambda_model(tmp_path / "evil.keras")
    with pytest.raises(UserError, match="refused: the model holds Python code"):
        load_keras(tmp_path / "evil.keras")


def test_a_file_that_is_no_model_is_a_user_error(tmp_path):
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a .keras archive"):
        load_keras(tmp_path / "broken.keras")
    with pytest.raises(UserError, match="no model file"):
        load_keras(tmp_path / "missing.keras")


def test_a_truncated_model_file_is_named_as_such(tmp_path):
    _lambda_model(tmp_path / "whole.keras")
    data = (tmp_path / "whole.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])  # a copy interrupted by a full disk
    with pytest.raises(UserError, match="not a .keras archive \\(truncated"):
        load_keras(tmp_path / "cut.keras")


def test_predict_cli_refuses_it_in_one_line(tmp_path):
    _lambda_model(tmp_path / "evil.keras")
    (tmp_path / "x.png").write_bytes(b"")
    result = subprocess.run([sys.executable, "-m", "transferlab", "predict", str(tmp_path / "x.png"), "--model",
                             str(tmp_path / "evil.keras")], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert lines and lines[-1].startswith("transferlab predict: error:") and "refused" in lines[-1]
    assert "Traceback" not in result.stderr
