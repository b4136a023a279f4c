"""The shell every `python -m stages.<name>` shares: parse arguments, validate params, track, report errors."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transferlab.core.errors import ParamsError, UserError
from transferlab.core.params import Params, load_params

log = logging.getLogger("transferlab")


@dataclass(frozen=True)
class StageContext:
    params: Params
    root: Path  # the project root: every params path is relative to it
    backbone_name: str = ""  # per-backbone stages: which of compare.backbones (default backbone.name)

    def path(self, relative: str) -> Path:
        """A params path in the workspace; one that a symlink leads out of it is refused, never followed."""
        path = self.root / relative
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise ParamsError(f"{relative}: resolves to {path.resolve()}, outside the workspace {self.root} (through "
                              f"a symlink); outputs stay inside the workspace, remove the link or change paths.*")
        return path

    @property
    def backbone(self) -> str:
        return self.backbone_name or self.params.backbone.name


# The one contract of every stage module: `run(context) -> metrics` (logged to the stage's MLflow run).
StageBody = Callable[[StageContext], dict[str, Any] | None]


def _arguments(stage: str, argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m stages.{stage}")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--no-track", action="store_true", help="do not log this run to MLflow")
    parser.add_argument("--backbone", default="", help="per-backbone stages: one of compare.backbones "
                                                       "(default: backbone.name)")
    return parser.parse_args(argv)


def run_stage(stage: str, body: StageBody, param_sections: Sequence[str], argv: Sequence[str] | None = None) -> int:
    """Run one stage; returns its exit code. User errors print one line; bugs keep their traceback."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's INFO lines drown the stage's own log
    args = _arguments(stage, argv)
    try:
        params = load_params(args.params)
        context = StageContext(params, Path(args.params).resolve().parent, args.backbone)
        params.backbone_named(context.backbone)  # an unknown --backbone is a user error before any work
        from transferlab.modeling.distribution import is_chief

        if args.no_track or not is_chief():  # in a cluster, only the chief records the run
            body(context)
            return 0
        from transferlab.tracking import mlflow_runs

        logged = {section: getattr(params, section).model_dump() for section in param_sections}
        if "backbone" in logged:
            logged["backbone"] = params.backbone_named(context.backbone).model_dump()
        run_name = f"{stage}@{args.backbone}" if args.backbone else stage  # as DVC names the stage
        with mlflow_runs.stage_run(run_name, params.mlflow.experiment, context.root, logged):
            metrics = body(context) or {}
            if metrics:
                import mlflow

                mlflow.log_metrics(metrics)
    except UserError as exc:
        print(f"{stage}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def main_for(stage: str, body: StageBody, param_sections: Sequence[str]) -> None:
    sys.exit(run_stage(stage, body, param_sections))
