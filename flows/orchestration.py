"""What the Prefect flow needs from the project, kept free of Prefect: stage order, outcomes, summaries."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

RAN, CACHED = "ran", "cached"


@dataclass
class StageResult:
    stage: str
    outcome: str  # ran | cached
    seconds: float | None  # None inside a `dvc exp run`, which times the pipeline as a whole


def pipeline_stages(workspace: Path) -> list[str]:
    """Stage names in dvc.yaml order, which is their dependency order."""
    return list(yaml.safe_load((workspace / "dvc.yaml").read_text(encoding="utf-8"))["stages"])


def outcomes(output: str, stages: list[str]) -> dict[str, str]:
    """Which stages DVC ran and which it skipped or restored from its cache, read from its output.

    A `foreach` group (extract_features) counts as ran when any of its stages (extract_features@x) ran."""
    found = {}
    for stage in stages:
        name = rf"{re.escape(stage)}(@[^']+)?"
        if re.search(rf"Running stage '{name}'", output):
            found[stage] = RAN
        elif re.search(rf"Stage '{name}' (didn't change|is cached)", output):
            found[stage] = CACHED
    return found


def run_streaming(command: list[str], cwd: Path, emit: Callable[[str], None], env: Mapping[str, str]) -> tuple[int, str]:
    """Run a command, passing each output line to `emit` as it comes; returns (exit code, all output)."""
    lines = []
    with subprocess.Popen(command, cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as process:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            emit(line.rstrip("\n"))
    return process.returncode, "".join(lines)


PARAMS_ERROR_EXIT = 2  # transferlab.core.errors.ParamsError: the configuration is wrong; running again cannot help


def stage_exit_code(output: str) -> int | None:
    """The exit code of the stage command DVC ran last, from its message `failed to run: ..., exited with N`."""
    codes = re.findall(r"exited with (-?\d+)", output)
    return int(codes[-1]) if codes else None


def failure_message(stage: str, output: str) -> str:
    """The stage's own one-line error when it printed one, else the last output line."""
    errors = [line for line in output.splitlines() if ": error: " in line]
    tail = errors[-1] if errors else (output.strip().splitlines() or ["(no output)"])[-1]
    return f"stage {stage} failed: {tail.strip()}"


def override_arguments(overrides: Mapping[str, Any]) -> list[str]:
    """`dvc exp run -S` arguments; values in YAML syntax so lists and nulls survive."""
    arguments = []
    for key, value in sorted(overrides.items()):
        rendered = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
        arguments += ["-S", f"{key}={rendered}"]
    return arguments


def summary_markdown(results: list[StageResult], headline: dict[str, Any], metrics: dict[str, Any],
                     mlflow_note: str, registry_note: str, experiment: str | None) -> str:
    """The flow run's Markdown artifact: the stages, the headline (metrics/summary.json), every metric, MLflow, registry."""
    rows = "\n".join(f"| {r.stage} | {r.outcome} | {'-' if r.seconds is None else f'{r.seconds:.1f}'} |"
                     for r in results)
    headline_rows, metric_rows = (
        "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, (int, float)) else f"| {k} | {v} |" for k, v in table.items())
        for table in (headline, metrics))
    recorded = f"\nRecorded as DVC experiment `{experiment}` (`dvc exp show`).\n" if experiment else ""
    return (f"# transferlab pipeline\n\n| stage | outcome | seconds |\n|---|---|---|\n{rows}\n{recorded}\n"
            f"## Headline\n\n| metric | value |\n|---|---|\n{headline_rows or '| (no evaluation yet) | |'}\n\n"
            f"## Metrics\n\n| metric | value |\n|---|---|\n{metric_rows}\n\n## MLflow\n\n{mlflow_note}\n\n"
            f"## Registry\n\n{registry_note}\n")


def flat_metrics(workspace: Path, files: Mapping[str, str]) -> dict[str, Any]:
    """Scalar metrics from the pipeline's JSON metrics files (label -> path), keyed label.key.path."""
    import json

    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[prefix] = value

    for label, name in files.items():
        path = workspace / name
        if path.is_file():
            walk(label, {k: v for k, v in json.loads(path.read_text()).items() if k != "sweep"})
    return flat
