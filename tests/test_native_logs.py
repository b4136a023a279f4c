"""TensorFlow's C++ start-up lines stay out of what stages and the CLI print (issue 15)."""

from __future__ import annotations

import os
import subprocess
import sys

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import PROJECT_ROOT
from transferlab.core.native_logs import is_device_noise, is_start_up_noise

ABSL = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
ONEDNN = ("I0000 00:00:1795908837.898748   12581 port.cc:153] oneDNN custom operations are on. You may see "
          "slightly different numerical results\n")
CUINIT = ("E0000 00:00:1795908843.899714   12581 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
          "Failed call to cuInit: UNKNOWN ERROR (303)\n")


def test_start_up_lines_are_noise_and_real_errors_are_not():
    assert is_start_up_noise(ABSL) and is_start_up_noise(ONEDNN) and not is_start_up_noise(CUINIT)
    assert is_device_noise(CUINIT) == (not os.path.exists("/dev/nvidiactl"))  # a GPU machine keeps the reason
    assert not is_device_noise("E0000 00:00:1.0 1 op_kernel.cc:1] OOM when allocating tensor\n")
    assert not is_device_noise("Traceback (most recent call last):\n")


MODULE = [sys.executable, "-m", "transferlab"]
CONSOLE_SCRIPT = [str(Path(sys.executable).parent / "transferlab")]  # what users type: pyproject's [project.scripts]


def _predict(tmp_path, env_extra, command=MODULE):
    import keras

    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs))
    keras.Model(inputs, outputs).save(tmp_path / "model.keras")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
    env = {key: value for key, value in os.environ.items() if key not in ("TF_CPP_MIN_LOG_LEVEL",)}
    return subprocess.run([*command, "predict", str(tmp_path / "x.png"), "--model",
                           str(tmp_path / "model.keras")], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          env={**env, **env_extra}, timeout=300)


@pytest.mark.parametrize("command", [MODULE, CONSOLE_SCRIPT], ids=["python -m transferlab", "transferlab"])
def test_the_cli_prints_no_tensorflow_start_up_line(tmp_path, command):
    quiet = _predict(tmp_path, {}, command)
    assert quiet.returncode == 0 and quiet.stdout.startswith(f"{tmp_path / 'x.png'}: ")
    noisy = [line for line in quiet.stderr.splitlines(keepends=True) if is_start_up_noise(line) or "cuInit" in line]
    assert noisy == [], quiet.stderr


def test_the_cli_shows_tensorflows_lines_when_asked(tmp_path):
    shown = _predict(tmp_path, {"TRANSFERLAB_TF_LOGS": "1"})  # asked for: TensorFlow's lines as it prints them
    assert "absl::InitializeLog" in shown.stderr
