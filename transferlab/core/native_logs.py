"""TensorFlow's C++ start-up lines, kept out of every stage's and CLI's output unless asked for.

Importing TensorFlow 2.21 prints absl lines before TensorFlow's own log level applies ("All log messages
before absl::InitializeLog() ...", oneDNN, "Could not find cuda drivers"), and looking for a GPU on a CPU
machine logs `E0000 ... failed call to cuInit`. No environment variable silences the first kind, so they
are caught at the file-descriptor level while TensorFlow loads and while GPUs are listed, and every line
that is not such noise is written back. `TRANSFERLAB_TF_LOGS=1` shows everything, as TensorFlow prints it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import TextIO
from pathlib import Path

SHOW_ENV = "TRANSFERLAB_TF_LOGS"
# absl's INFO/WARNING lines (I0000 00:00:... file.cc:123] ...) and the banner absl prints before it is set up.
START_UP_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
                            r"|[IW]\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.]+:\d+\] "
                            r"|To enable the following instructions: .* rebuild TensorFlow)")
NO_GPU_DRIVER = re.compile(r"^E\d{4} .*failed call to cuInit")


def showing_everything() -> bool:
    return os.environ.get(SHOW_ENV, "") not in ("", "0")


@contextlib.contextmanager
def filtered_native_stderr(is_noise: Callable[[str], bool]) -> Iterator[None]:
    """Everything written to file descriptor 2 inside the block, minus the lines `is_noise` picks, after it."""
    if showing_everything():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode(errors="replace").splitlines(keepends=True)
                    if not is_noise(line)]
            sys.stderr.write("".join(kept))


def is_start_up_noise(line: str) -> bool:
    return bool(START_UP_NOISE.match(line))


def is_device_noise(line: str) -> bool:
    """Start-up noise, or the cuInit error of a machine with no NVIDIA device at all (on a machine that has one,
    the same line says why its GPU is not used, and stays)."""
    return is_start_up_noise(line) or (bool(NO_GPU_DRIVER.match(line)) and not Path("/dev/nvidiactl").exists())


def copy_without_noise(source: TextIO, target: TextIO) -> None:
    """Copy another process' output line by line, as it comes, minus TensorFlow's start-up and device noise
    (`transferlab serve`: the served model's own process imports TensorFlow outside this filter)."""
    for line in source:
        if showing_everything() or not is_device_noise(line):
            target.write(line)
            target.flush()


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with filtered_native_stderr(is_device_noise):
            self.loader.exec_module(module)
            # GPU discovery logs the cuInit line on a machine without a driver; do it now, inside the filter.
            module.config.list_physical_devices("GPU")


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Loads `tensorflow` (once, whoever imports it first: keras, tfds, our code) with its start-up lines caught."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # find the real spec, and never wrap again
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_tensorflow() -> None:
    """Call before anything imports TensorFlow: hide its C++ start-up lines (unless TRANSFERLAB_TF_LOGS=1)."""
    if showing_everything():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # INFO and WARNING lines once TensorFlow is set up
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())
