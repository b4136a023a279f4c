"""`transferlab repro` and `transferlab exp run`: DVC with one pipeline id for all its stages, then the stages DVC
skipped recorded on the pipeline run, and the run's closing block."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from transferlab.core.child_processes import stop_group
from transferlab.core.errors import UserError
from transferlab.core.params_loader import load_params
from transferlab.core.wording import plural
from transferlab.evaluation.run_headline import read_run_figures, run_block
from transferlab.execution_record import experiment_name, record_execution
from transferlab.tracking.runs import stage_tags
from transferlab.tracking.tags import PIPELINE_ID_ENV
from transferlab.workspace import tool_env

# `dvc exp run` options that run experiments elsewhere (queued, in temporary folders): each is its own execution,
# so they get no shared pipeline id, and the workspace holds none of their results to summarize.
ELSEWHERE = ("--queue", "--run-all", "--temp", "-j", "--jobs")


def run_dvc(command: list[str], dvc_args: list[str], summarized: str | None) -> int:
    """Run `dvc <command>` in this workspace; when `summarized`, with one pipeline id for its stages, then
    record the stages DVC skipped and print the run's block."""
    pid = os.environ.get(PIPELINE_ID_ENV) or f"repro-{uuid.uuid4().hex[:12]}"
    env = tool_env({PIPELINE_ID_ENV: pid} if summarized else {})
    dvc = shutil.which("dvc", path=env["PATH"])  # this interpreter's first, as the stages' `python` is
    if dvc is None:
        raise UserError("dvc: not found; run `make install` (it installs DVC into .venv)")
    # A process group of its own, told here of a Ctrl-C or SIGTERM: a SIGTERM (or a Ctrl-C sent to this process
    # alone) left dvc and its stage running after this command had exited 130, the stage to its end.
    process = subprocess.Popen([dvc, *command, *dvc_args], env=env, stdout=subprocess.PIPE if summarized else None,
                               text=True, process_group=0)
    output = []
    try:
        for line in process.stdout or ():  # shown as it comes; kept for the experiment's name
            print(line, end="", flush=True)
            output.append(line)
        process.wait()
    except KeyboardInterrupt:
        # Ctrl-C, as a terminal sends it: dvc leaves it to its stage, which stops and reports; dvc then fails it
        stop_group(process, sent=signal.SIGINT)
        raise
    if process.returncode == 0 and summarized:
        shown_as = f"transferlab {summarized}"
        record_run(pid, shown_as, experiment_name("".join(output)))
        print("\n".join(run_block_of(pid, command=shown_as)))
    return process.returncode


def record_run(pid: str, command: str, dvc_experiment: str | None = None) -> None:
    """The stages DVC found up to date go onto the pipeline run as restored (a retry's run carries every stage)."""
    try:
        restored = record_execution(Path.cwd(), pid, dvc_experiment)
    except Exception as exc:  # noqa: BLE001 - the run is done and its outputs saved; only the record is short
        print(f"{command}: the stages DVC skipped were not recorded in MLflow ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return
    if restored:
        print(f"{command}: {plural(len(restored), 'stage')} {'was' if len(restored) == 1 else 'were'} up to date (DVC "
              f"restored or kept their outputs): "
              f"recorded on the pipeline run as restored", file=sys.stderr)


def run_block_of(pid: str, root: Path = Path(), command: str = "transferlab repro") -> list[str]:
    """The run's headline, its registry decision (read back from its evaluate run) and advice; [] before evaluate."""
    params = load_params(root / "params.yaml")
    try:
        tags = stage_tags(root, params.mlflow.experiment, pid, "evaluate")
    except Exception as exc:  # noqa: BLE001 - the run is done and saved; only its summary misses the decision
        print(f"{command}: the registry's decision was not read back ({type(exc).__name__}: {exc}); see "
              "the evaluate stage's output", file=sys.stderr)
        tags = None
    registry = {key: value for key, value in (tags or {}).items() if key.startswith("registry.")}
    run = read_run_figures(root, params.paths, params.backbone.name, params.evaluate.min_accuracy, registry or None)
    return run_block(run, params.paths) if run else []
