"""After a pipeline execution (`transferlab repro`, the Prefect flow): its MLflow pipeline run carries every stage,
those DVC did not run marked as restored, with the headline from the outputs; a registered model that a failed
attempt made and this execution holds follows this execution (tracking/completion.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from transferlab.core.params_loader import load_params
from transferlab.tracking.completion import complete_pipeline_run
from transferlab.tracking.lineage import locked_outputs, locked_stages, verified_md5

UNTRACKED_STAGES = ("check_params",)  # the guard records no run of its own (stages/check_params.py)


def downstream(stages: dict[str, dict], changed: set[str]) -> set[str]:
    """`changed` and every stage that depends, through any chain of outputs, on one of them (dvc.lock's entries)."""
    def feeds(upstream: dict, stage: dict) -> bool:
        outs = [out["path"].rstrip("/") for out in upstream.get("outs", [])]
        return any(dep["path"] == out or dep["path"].startswith(f"{out}/")
                   for dep in stage.get("deps", []) for out in outs)
    stale = set(changed)
    grew = True
    while grew:
        more = {name for name, stage in stages.items() if name not in stale
                and any(feeds(stages[other], stage) for other in stale if other in stages)}
        stale |= more
        grew = bool(more)
    return stale


def up_to_date_stages(root: Path, changed: set[str]) -> list[str]:
    """The tracked stages of dvc.lock (as DVC names them, `train_head@resnet50`) that `dvc status` does not list as
    changed, directly or through a stage upstream."""
    stages = locked_stages(root)
    stale = downstream(stages, changed)
    return [name for name in stages if name not in UNTRACKED_STAGES and name not in stale]


def changed_stages(root: Path) -> set[str]:
    """What `dvc status` lists as changed (directly: DVC does not name the stages downstream)."""
    from transferlab.workspace import run_tool

    return set(json.loads(run_tool(root, "dvc", "status", "--json").stdout or "{}"))


def experiment_name(output: str) -> str | None:
    """The experiment `dvc exp run` made, from its closing line (`Ran experiment(s): name`)."""
    found = re.search(r"Ran experiment\(s\): (\S+)", output)
    return found.group(1).rstrip(",") if found else None


def record_execution(root: Path, pid: str, dvc_experiment: str | None = None) -> list[str]:
    """Complete execution `pid`'s pipeline run in the workspace `root`; returns the stages recorded as restored."""
    params = load_params(root / "params.yaml")
    summary = root / params.paths.summary_metrics
    headline = json.loads(summary.read_text(encoding="utf-8")) if summary.is_file() else {}
    md5 = verified_md5(root, params.paths.fine_tuned, locked_outputs(root))
    model = (params.evaluate.registered_model, md5) if md5 else None
    return complete_pipeline_run(root, params.mlflow.experiment, pid, up_to_date_stages(root, changed_stages(root)),
                                 {k: v for k, v in headline.items() if isinstance(v, (int, float))}, model,
                                 dvc_experiment)
