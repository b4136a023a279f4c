"""`transferlab` / `python -m transferlab`: commands for using what the pipeline made."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from transferlab.core.errors import FAILURES_USERS_FIX, UserError, one_line_failure
from transferlab.core.paths import PathsParams
from transferlab.core.redaction import redacted_output


def _predict(args: argparse.Namespace) -> int:
    from transferlab.evaluation.predict import as_table, load_model, predict_files
    from transferlab.serving.server import check_alias

    if args.model.startswith("models:/"):
        check_alias(args.model, otherwise="give --model a local model.keras")
    loaded = load_model(args.model)
    top_k = min(args.top_k, len(loaded.classes))
    results = predict_files(loaded, args.images, top_k, args.batch_size)
    for result in results:
        if "error" in result:
            print(f"{result['file']}: error: {result['error']}", file=sys.stderr)
        elif not (args.json or args.csv):
            ranked = ", ".join(f"{entry['class']} {entry['probability']:.3f}" for entry in result["top"])
            print(f"{result['file']}: {ranked}")
    if args.json:
        print(json.dumps(results, indent=2))
    elif args.csv:
        print(as_table(results, top_k).to_csv(index=False), end="")
    return 1 if any("error" in result for result in results) else 0


def _serve(args: argparse.Namespace) -> int:
    """MLflow's model server for the registered model, on loopback unless told otherwise."""
    import subprocess
    import threading

    from transferlab.core.child_processes import ending_with_this_process, stop_group
    from transferlab.core.native_logs import copy_without_noise
    from transferlab.serving.server import check_port_free, check_servable, is_loopback, serve_command
    from transferlab.workspace import tool_env

    uri = args.model or f"models:/{_registered_name()}@champion"
    check_port_free(args.host, args.port)
    check_servable(uri)
    if not is_loopback(args.host):
        print(f"transferlab serve: warning: {args.host} is not loopback: anyone who reaches this machine's port "
              f"{args.port} can use the model (MLflow's server has no authentication)", file=sys.stderr)
    print(f"transferlab serve: {uri} on http://{args.host}:{args.port}/invocations (Ctrl-C stops it)",
          file=sys.stderr)
    quiet = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "TF_CPP_MIN_LOG_LEVEL": "1"}  # unless the user set them
    # A process group of its own (MLflow's CLI and the uvicorn it execs), stopped here at Ctrl-C or SIGTERM, and a
    # parent-death signal for a SIGKILL of this process: the model server never outlives the command.
    server = subprocess.Popen(serve_command(uri, args.host, args.port), stderr=subprocess.PIPE, text=True,
                              env=tool_env({name: os.environ.get(name, value) for name, value in quiet.items()}),
                              process_group=0, preexec_fn=ending_with_this_process())
    relay = threading.Thread(target=copy_without_noise, args=(server.stderr, sys.stderr), daemon=True)
    relay.start()
    try:
        code = server.wait()
    except KeyboardInterrupt:
        stop_group(server)
        relay.join(timeout=30)  # its output ends when the last of the group (uvicorn) has gone
        print("transferlab serve: stopped", file=sys.stderr)
        return 130
    relay.join(timeout=5)  # the server's last lines (why it stopped) before our exit
    return code


def _drift(args: argparse.Namespace) -> int:
    """One line on stdout: whether the images under the folder differ from the training images; the report and
    an MLflow run named `drift` (a stage's run: the tracking store is checked before any work)."""
    from transferlab.core.params_loader import load_params
    from transferlab.quality import drift_check
    from transferlab.tracking.runs import stage_run

    params, root, folder = load_params(args.params), args.params.resolve().parent, Path(args.folder)
    inputs = drift_check.checked_inputs(folder, params, root)  # a bad argument: one line, no MLflow run
    out = drift_check.report_dir(args.out, folder, params, root)  # never the images' folder, nor a user's
    logged = {"folder": str(folder), "backbone": params.backbone.name}
    with stage_run("drift", params.mlflow.experiment, root, logged,
                   pipeline_name=f"drift {folder.name} {params.backbone.name}") as tracker:
        result = drift_check.measure_drift(inputs, params, root, out)
        tracker.log_metrics(drift_check.tracked_metrics(result))
        for name in (drift_check.DRIFT_JSON, drift_check.REPORT_MD):
            tracker.log_artifacts(out / name, "drift")
    print(result.verdict())
    return 0


def _compare(args: argparse.Namespace) -> int:
    """The newest pipeline runs side by side: headline figures, the registry's decision, the params that differ."""
    import mlflow
    import pandas as pd

    from transferlab.core.params_loader import load_params
    from transferlab.tracking.comparison import comparison, pipeline_runs
    from transferlab.tracking.store import check_tracking_store, tracking_uri

    experiment, root = args.experiment or load_params(args.params).mlflow.experiment, args.params.resolve().parent
    uri = tracking_uri(root)
    database = uri.removeprefix("sqlite:///")
    if uri.startswith("sqlite:///") and not Path(database).exists():  # reading must not create it
        raise UserError(f"{database}: no MLflow database here yet; run the pipeline first (make run)")
    check_tracking_store(root)  # a store that does not answer: one line, in seconds
    found = mlflow.get_experiment_by_name(experiment)
    runs = pipeline_runs(mlflow.MlflowClient(), found.experiment_id, args.last) if found else []
    if not runs:
        raise UserError(f"experiment {experiment!r}: no pipeline runs in this tracking store yet; run the pipeline "
                        "(make run), or name another with --experiment")
    with pd.option_context("display.max_columns", None, "display.width", None, "display.max_colwidth", None):
        print(comparison(runs).to_string())
    return 0


def _registered_name() -> str:
    from transferlab.core.params_loader import load_params

    return load_params().evaluate.registered_model if Path("params.yaml").is_file() else "transferlab"


def _doctor(args: argparse.Namespace) -> int:
    from transferlab.doctor import as_records, diagnose, render

    findings = diagnose(args.params)
    print(json.dumps(as_records(findings), indent=2) if args.json else render(findings))
    return 0 if all(finding.ok for finding in findings) else 1


def _stack(args: argparse.Namespace) -> int:
    """The team's services on this machine (transferlab/stack)."""
    from transferlab.stack import control
    from transferlab.stack.layout import default_stack_dir, load_layout

    root = args.dir.resolve() if args.dir else default_stack_dir()
    if args.action != "up" and not root.joinpath("stack.json").is_file():
        raise UserError(f"stack {args.action}: no stack in {root}; start one with `transferlab stack up`")
    layout = load_layout(root, args.port_offset if args.action == "up" else None)
    if args.action == "up":
        from transferlab.core.params_loader import load_params

        params = load_params(args.params) if args.params.is_file() else None
        experiment = params.mlflow.experiment if params else "transferlab"
        model = params.evaluate.registered_model if params else "transferlab"
        control.up(layout, experiment, model)
    elif args.action == "down":
        control.down(layout)
    elif args.action == "status":
        rows = control.status(layout)
        for name, url, state in rows:
            print(f"{name:<15} {url:<32} {state}")
        return 0 if all(state == "ok" for _, _, state in rows) else 1
    else:
        path = control.write_member_env(layout, args.user)
        if not args.no_dvc and Path(".dvc").is_dir():
            control.configure_dvc_remote(layout, args.user, Path.cwd())
            print(f"stack env: DVC remote {control.DVC_REMOTE!r} set as the default (the member's key in "
                  ".dvc/config.local)", file=sys.stderr)
        print(f"source {path}")
    return 0


def _positive(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more (got {text!r})")
    return value


def _port(text: str) -> int:
    value = _positive(text)
    if value > 65535:  # the socket call would raise OverflowError, a traceback
        raise argparse.ArgumentTypeError(f"must be a TCP port, 1 to 65535 (got {text!r})")
    return value


def _repro(args: argparse.Namespace) -> int:
    """`dvc repro` with one pipeline id for all its stages, so they share one MLflow pipeline run everywhere
    (the id of the `dvc` process, found through /proc, is only a Linux fallback)."""
    from transferlab.dvc_runs import run_dvc

    return run_dvc(["repro"], args.dvc_args, "repro")


def _exp_run(args: argparse.Namespace) -> int:
    """`dvc exp run` as `transferlab repro` runs `dvc repro`: one pipeline run, named after the experiment."""
    from transferlab.dvc_runs import ELSEWHERE, run_dvc

    elsewhere = any(arg.split("=")[0] in ELSEWHERE for arg in args.dvc_args)
    return run_dvc(["exp", "run"], args.dvc_args, None if elsewhere else "exp run")


def _tracking_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", help="MLflow tracking URI for models:/ (default: $MLFLOW_TRACKING_URI "
                                               "or sqlite:///mlflow.db)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transferlab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="top-k classes for image files, folders (recursive) and globs")
    predict.add_argument("images", nargs="+", help="image files, folders, or quoted glob patterns ('photos/**/*.jpg')")
    predict.add_argument("--model", default=PathsParams().fine_tuned_model,
                         help="a .keras file, or models:/<name>@champion (default: %(default)s)")
    predict.add_argument("--top-k", type=_positive, default=3, help="classes shown per image (default: 3)")
    predict.add_argument("--batch-size", type=_positive, default=32, help="images per model call (default: 32)")
    formats = predict.add_mutually_exclusive_group()
    formats.add_argument("--json", action="store_true", help="print JSON instead of lines")
    formats.add_argument("--csv", action="store_true", help="print CSV (file, class, probability, ..., error)")
    _tracking_option(predict)
    predict.set_defaults(run=_predict)
    serve = commands.add_parser("serve", help="serve the registered champion with `mlflow models serve`: POST "
                                              "base64 images to /invocations")
    serve.add_argument("--model", help="models:/<name>@<alias> or models:/<name>/<version> "
                                       "(default: models:/<evaluate.registered_model>@champion)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=_port, default=5000, help="(default: %(default)s)")
    _tracking_option(serve)
    serve.set_defaults(run=_serve)
    repro = commands.add_parser("repro", help="dvc repro, its stages sharing one MLflow pipeline run "
                                              "(arguments go to dvc repro)")
    repro.set_defaults(run=_repro, dvc_args=[])
    exp = commands.add_parser("exp", help="`transferlab exp run [dvc exp run args]`: dvc exp run, its stages "
                                          "sharing one MLflow pipeline run named after the experiment")
    exp.add_argument("action", choices=["run"])
    exp.set_defaults(run=_exp_run, dvc_args=[])
    drift = commands.add_parser("drift", help="whether new images differ from the training images, in the "
                                              "backbone's features (one verdict line; a report in reports/drift)")
    drift.add_argument("folder", help="a folder of new images (searched recursively)")
    drift.add_argument("--params", type=Path, default=Path("params.yaml"))
    drift.add_argument("--out", type=Path, help="report folder (default: <paths.reports>/drift beside params.yaml)")
    _tracking_option(drift)
    drift.set_defaults(run=_drift)
    compare = commands.add_parser("compare", help="the newest pipeline runs side by side: headline figures, the "
                                                  "registry's decision and only the params that differ")
    compare.add_argument("--last", type=_positive, default=5, help="how many of the newest runs (default: 5)")
    compare.add_argument("--experiment", help="MLflow experiment (default: mlflow.experiment of --params)")
    compare.add_argument("--params", type=Path, default=Path("params.yaml"))
    _tracking_option(compare)
    compare.set_defaults(run=_compare)
    doctor = commands.add_parser("doctor", help="versions, GPUs, data, weights, MLflow, Prefect, disk: each problem "
                                                "with its fix (exit 1 when there is one)")
    doctor.add_argument("--params", type=Path, default=Path("params.yaml"))
    doctor.add_argument("--json", action="store_true", help="print JSON instead of lines")
    doctor.set_defaults(run=_doctor)
    stack = commands.add_parser("stack", help="the team's services on this machine: PostgreSQL, an S3 object store, "
                                              "MLflow's server with users, Prefect's server with a worker")
    stack.add_argument("action", choices=["up", "status", "down", "env"])
    stack.add_argument("--dir", type=Path, help="the stack's folder (default: $TRANSFERLAB_STACK_DIR or "
                                                "~/.local/share/transferlab/stack)")
    stack.add_argument("--port-offset", type=int, help="up: a new stack's ports moved by this much")
    stack.add_argument("--params", type=Path, default=Path("params.yaml"),
                       help="up: the experiment and registered model the members get rights on")
    stack.add_argument("--user", choices=["writer", "reader"], default="writer", help="env: as which member")
    stack.add_argument("--no-dvc", action="store_true", help="env: leave this clone's DVC remote as it is")
    stack.set_defaults(run=_stack)
    return parser


def _set_tracking_uri(given: str | None, home: Path = Path()) -> None:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else the project's default database in `home` (this folder)."""
    if given or not os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ["MLFLOW_TRACKING_URI"] = given or f"sqlite:///{(home / 'mlflow.db').resolve()}"


def main(argv: list[str] | None = None) -> int:
    from transferlab.core.interrupts import stop_on_interrupts
    from transferlab.core.native_logs import quiet_tensorflow
    from transferlab.core.utf8_mode import ensure_utf8_mode

    if argv is None:  # a command line, not a call from Python: its process may start again in UTF-8 mode
        ensure_utf8_mode()
        stop_on_interrupts()  # Ctrl-C and SIGTERM, even when started in the background with SIGINT ignored
    quiet_tensorflow()  # the `transferlab` script enters here, not through __main__ (TRANSFERLAB_TF_LOGS=1 shows it)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("repro", "exp"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.dvc_args = extra  # `transferlab repro -f train_head`, `exp run -S k=v`: everything unknown is dvc's
    if args.command in ("predict", "serve"):
        _set_tracking_uri(args.tracking_uri)
    elif args.command in ("drift", "compare"):  # the pipeline's store, in the workspace of --params
        _set_tracking_uri(args.tracking_uri, args.params.resolve().parent)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # progress lines when stderr is not a terminal
    with redacted_output():
        try:
            return args.run(args)
        except FAILURES_USERS_FIX as exc:
            line, code = one_line_failure(exc, f"transferlab {args.command}")
            print(line, file=sys.stderr)
            return code
