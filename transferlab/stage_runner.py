"""The shell every `python -m stages.<name>` shares: parse arguments, validate params, track, report errors."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from transferlab.core.errors import FAILURES_USERS_FIX, ParamsError, one_line_failure
from transferlab.core.params import Params
from transferlab.core.params_loader import load_params
from transferlab.core.process_exit import exit_without_teardown
from transferlab.core.progress import stage_timing
from transferlab.core.redaction import RedactingStream, redacted_output
from transferlab.params_snapshot import check_same_values, check_unchanged
from transferlab.tracking.processes import shared_pipeline_id
from transferlab.tracking.tracker import NULL_TRACKER, Tracker

log = logging.getLogger("transferlab")


@dataclass(frozen=True)
class StageContext:
    params: Params
    root: Path  # the project root: every params path is relative to it
    backbone_name: str = ""  # per-backbone stages: which of compare.backbones (default backbone.name)
    params_file: Path = Path("params.yaml")  # the file `params` came from
    tracker: Tracker = NULL_TRACKER  # what the stage records: MLflow, or nothing under --no-track

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


def run_stage(stage: str, body: StageBody, param_sections: Sequence[str], argv: Sequence[str] | None = None,
              track: bool = True, registers: bool = False) -> int:
    """Run one stage; returns its exit code. User errors, interrupts and I/O errors the user fixes print one
    line; bugs keep their traceback. Nothing printed carries a credential (see transferlab.core.redaction).
    `registers`: the stage registers model versions (evaluate.registered_model), which its account must be
    allowed to do before it starts."""
    with redacted_output():
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        args = _arguments(stage, argv)
        args.no_track = args.no_track or not track
        try:
            _run(stage, body, param_sections, args, registers)
        except FAILURES_USERS_FIX as exc:
            line, code = one_line_failure(exc, stage, "interrupted; outputs are replaced only whole, so none is "
                                                      "left half-written")
            print(line, file=sys.stderr)
            return code
    return 0


def _run(stage: str, body: StageBody, param_sections: Sequence[str], args: argparse.Namespace,
         registers: bool = False) -> None:
    params = load_params(args.params)
    context = StageContext(params, Path(args.params).resolve().parent, args.backbone, Path(args.params).resolve())
    params.backbone_named(context.backbone)  # an unknown --backbone is a user error before any work
    if pipeline := shared_pipeline_id():
        check_unchanged(Path(args.params), context.path(params.paths.scratch) / "pipelines", pipeline)
    from transferlab.modeling.distribution import is_chief

    if args.no_track or not is_chief():  # in a cluster, only the chief records the run
        with stage_timing(stage):
            body(context)
        check_same_values(context.params_file, params, stage)
        return
    from transferlab.tracking import runs  # MLflow's import takes seconds: only for a tracked stage

    logged = {section: getattr(params, section).model_dump() for section in param_sections}
    if "backbone" in logged:
        logged["backbone"] = params.backbone_named(context.backbone).model_dump()
    run_name = f"{stage}@{args.backbone}" if args.backbone else stage  # as DVC names the stage
    name = runs.pipeline_name(data_description(params.data), params.backbone.name)
    with runs.stage_run(run_name, params.mlflow.experiment, context.root, logged, name,
                        generated=[params.paths.metrics, params.paths.plots],
                        pipeline_params=params.model_dump(mode="json"),
                        registered_model=params.evaluate.registered_model if registers else None) as tracker:
        with stage_timing(run_name):
            metrics = body(replace(context, tracker=tracker)) or {}
        tracker.log_metrics(metrics)
        check_same_values(context.params_file, params, stage)  # inside the run: a refused stage's run is FAILED


def data_description(data) -> str:
    """A few words for what the pipeline ran on: `tfds:oxford_iiit_pet`, `folder:cats_vs_dogs`, `synthetic`."""
    if data.source == "tfds":
        return f"tfds:{data.tfds.name}"
    if data.source == "folder":
        return f"folder:{Path(str(data.folder.root)).name}"
    if data.source == "table":
        return f"table:{Path(str(data.table.path)).name}"
    return "synthetic"


def main_for(stage: str, body: StageBody, param_sections: Sequence[str], track: bool = True,
             registers: bool = False) -> None:
    from transferlab.core.interrupts import stop_on_interrupts
    from transferlab.core.utf8_mode import ensure_utf8_mode

    ensure_utf8_mode()
    stop_on_interrupts()  # Ctrl-C and SIGTERM (Prefect cancelling, a scheduler): runs closed, one line, exit 130
    # For the whole process, so a bug's traceback printed at exit is scrubbed too.
    sys.stdout, sys.stderr = RedactingStream(sys.stdout), RedactingStream(sys.stderr)
    exit_without_teardown(run_stage(stage, body, param_sections, track=track, registers=registers))
