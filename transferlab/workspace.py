"""A throw-away copy of the project (git + DVC) with params overridden: used by `make demo` and the e2e tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The smallest pipeline that still exercises every stage offline. Every other setting is params.yaml's default.
OFFLINE_PARAMS = {"data.source": "synthetic", "backbone.weights": "none",  # no download: generated images, random init
                  "backbone.name": "resnet50", "compare.backbones": ["resnet50"],  # a backbone that needs no weights file
                  "evaluate.min_accuracy": 0.0}  # random weights on random images cannot reach the 0.8 champion gate
SIZE_PARAMS = {"data.synthetic.images_per_class": 8, "data.synthetic.image_size": 24, "data.image_size": 32,
               "head.epochs": 5, "fine_tune.epochs": 1, "adversarial.num_images": 4, "adversarial.epsilons": [0, 8],
               "adversarial.steps": 2, "adversarial.ideal_steps": 4, "adversarial.ideal_snapshot_every": 2,
               "adversarial.replication_steps": 3,
               "evaluate.min_test_images": 0}  # a test split of a few synthetic images may still be promoted
SMOKE_PARAMS = {**OFFLINE_PARAMS, **SIZE_PARAMS}
PROJECT_FILES = ("dvc.yaml", "params.yaml", "stages", "transferlab", "flows", ".dvc/config", ".dvcignore")


def set_params(params_file: Path, overrides: Mapping[str, Any]) -> None:
    """Apply dotted-key overrides (`data.source: synthetic`) to a params file, as `dvc exp run -S` does."""
    params = yaml.safe_load(params_file.read_text(encoding="utf-8")) or {}
    for dotted, value in overrides.items():
        node = params
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    params_file.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def tool_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment in which `python` and `dvc` are this interpreter's, as the stages expect."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("GIT_AUTHOR_NAME", "transferlab")
    env.setdefault("GIT_AUTHOR_EMAIL", "transferlab@localhost")
    env["GIT_COMMITTER_NAME"] = env["GIT_AUTHOR_NAME"]
    env["GIT_COMMITTER_EMAIL"] = env["GIT_AUTHOR_EMAIL"]
    env.update(extra or {})
    return env


def run_tool(workspace: Path, *args: str, check: bool = True, env: Mapping[str, str] | None = None,
             timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run a command (dvc, git, python ...) in the workspace and capture its output."""
    result = subprocess.run(list(args), cwd=workspace, env=tool_env(env), capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def stream_tool(workspace: Path, *args: str, env: Mapping[str, str] | None = None) -> int:
    """Run a command in the workspace with its output going straight to this process' stdout and stderr."""
    return subprocess.call(list(args), cwd=workspace, env=tool_env(env))


def create_workspace(dest: Path, overrides: Mapping[str, Any] | None = None, source: Path = PROJECT_ROOT) -> Path:
    """Copy the pipeline's files into dest, override params, and commit it as a fresh git repo."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PROJECT_FILES:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, dest / name, ignore=ignore, dirs_exist_ok=True)
        elif path.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest / name)
    ignored = ("/mlflow.db", "/mlflow.db.lock", "/mlartifacts/", "/.cache/", "/dvc_plots/", "__pycache__/")
    (dest / ".gitignore").write_text("".join(f"{line}\n" for line in ignored), encoding="utf-8")
    if overrides:
        set_params(dest / "params.yaml", overrides)
    run_tool(dest, "git", "init", "-q")
    run_tool(dest, "git", "add", "-A")
    run_tool(dest, "git", "commit", "-q", "-m", "workspace")
    return dest
