"""`transferlab` / `python -m transferlab`: commands for using what the pipeline made."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from transferlab.core.errors import FAILURES_USERS_FIX, UserError, one_line_failure
from transferlab.core.params import PathsParams
from transferlab.core.redaction import redacted_output
from transferlab.tracking.mlflow_runs import PIPELINE_ID_ENV


def _predict(args: argparse.Namespace) -> int:
    from transferlab.evaluation.predict import load_model, predict_files

    if args.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    loaded = load_model(args.model)
    results = predict_files(loaded, args.images, args.top_k)
    for result in results:
        if "error" in result:
            print(f"{result['file']}: error: {result['error']}", file=sys.stderr)
        elif not args.json:
            ranked = ", ".join(f"{entry['class']} {entry['probability']:.3f}" for entry in result["top"])
            print(f"{result['file']}: {ranked}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if any("error" in result for result in results) else 0


def _doctor(args: argparse.Namespace) -> int:
    from transferlab.doctor import as_records, diagnose, render

    findings = diagnose(args.params)
    print(json.dumps(as_records(findings), indent=2) if args.json else render(findings))
    return 0 if all(finding.ok for finding in findings) else 1


def _positive(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more (got {text!r})")
    return value


def _repro(args: argparse.Namespace) -> int:
    """`dvc repro` with one pipeline id for all its stages, so they share one MLflow pipeline run everywhere
    (the id of the `dvc` process, found through /proc, is only a Linux fallback)."""
    import shutil
    import subprocess
    import uuid

    from transferlab.workspace import tool_env

    env = tool_env({PIPELINE_ID_ENV: os.environ.get(PIPELINE_ID_ENV) or f"repro-{uuid.uuid4().hex[:12]}"})
    dvc = shutil.which("dvc", path=env["PATH"])  # this interpreter's first, as the stages' `python` is
    if dvc is None:
        raise UserError("dvc: not found; run `make install` (it installs DVC into .venv)")
    return subprocess.call([dvc, "repro", *args.dvc_args], env=env)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transferlab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="top-k classes for image files")
    predict.add_argument("images", nargs="+", type=Path)
    predict.add_argument("--model", default=PathsParams().fine_tuned_model,
                         help="a .keras file, or models:/<name>@champion (default: %(default)s)")
    predict.add_argument("--top-k", type=_positive, default=3, help="classes shown per image (default: 3)")
    predict.add_argument("--json", action="store_true", help="print JSON instead of lines")
    predict.add_argument("--tracking-uri", help="MLflow tracking URI for models:/ (default: $MLFLOW_TRACKING_URI "
                                                "or sqlite:///mlflow.db)")
    predict.set_defaults(run=_predict)
    repro = commands.add_parser("repro", help="dvc repro, its stages sharing one MLflow pipeline run "
                                              "(arguments go to dvc repro)")
    repro.set_defaults(run=_repro, dvc_args=[])
    doctor = commands.add_parser("doctor", help="versions, GPUs, data, weights, MLflow, Prefect, disk: each problem "
                                                "with its fix (exit 1 when there is one)")
    doctor.add_argument("--params", type=Path, default=Path("params.yaml"))
    doctor.add_argument("--json", action="store_true", help="print JSON instead of lines")
    doctor.set_defaults(run=_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "repro":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.dvc_args = extra  # `transferlab repro -f train_head`: everything unknown is dvc's
    if args.command == "predict" and not (args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")):
        args.tracking_uri = f"sqlite:///{Path('mlflow.db').resolve()}"
    with redacted_output():
        try:
            return args.run(args)
        except FAILURES_USERS_FIX as exc:
            line, code = one_line_failure(exc, f"transferlab {args.command}")
            print(line, file=sys.stderr)
            return code
