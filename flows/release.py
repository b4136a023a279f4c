"""The release flow: when `champion` moves, serve the new champion with MLflow's own server, check its answers
against evaluate's, measure its latency, tag the version; a failed check moves `champion` back and fails the run.

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.release serve [--workspace .] \\
        [--notify-block custom-webhook/team]      # a deployment started by the evaluate stage's event
    python -m flows.release run [--version 7]     # by hand (default: the current champion)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from prefect import State, flow, get_run_logger, runtime
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
from prefect.states import Failed

from transferlab.core.errors import UserError
from transferlab.core.interrupts import stop_on_interrupts
from transferlab.core.params_loader import load_params
from transferlab.core.redaction import redacted_output
from transferlab.serving.release import ReleaseSettings, notice, release
from transferlab.serving.release_events import EVENT, resource_id

DEPLOYMENT = "release-on-promotion"


def _client(workspace: str):
    import mlflow

    from transferlab.tracking.store import tracking_uri

    uri = tracking_uri(Path(workspace).resolve())
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(), uri


def _notify(flow, flow_run, state) -> None:
    """A log line always; the notification block named by `notify_block` too (its URL stays in the block)."""
    from prefect.blocks.core import Block
    from prefect.logging.loggers import flow_run_logger

    parameters = flow_run.parameters
    client, _ = _client(parameters.get("workspace", "."))
    version = parameters.get("version")
    tags = client.get_model_version(parameters.get("model", "transferlab"), version).tags if version else {}
    message = notice(tags, flow_run.id, f"release flow run {flow_run.name}: {state.name}: {state.message}")
    flow_run_logger(flow_run, flow).info("%s", message)
    if parameters.get("notify_block"):
        Block.load(parameters["notify_block"]).notify(body=message, subject="transferlab release")


@flow(name="transferlab-release", on_completion=[_notify], on_failure=[_notify])
def release_flow(model: str = "transferlab", version: str | None = None, workspace: str = ".",
                 concurrency: int = 4, requests: int = 32, tolerance: float = 0.01, max_p95_ms: float | None = None,
                 notify_block: str | None = None) -> dict | State:
    """Release `version` of registered `model` (default: the current champion) from `workspace`'s MLflow."""
    from transferlab.tracking.promotion import champion_version

    client, uri = _client(workspace)
    version = version or str(champion_version(client, model).version)
    outcome = release(client, model, version, uri, ReleaseSettings(concurrency, requests, tolerance, max_p95_ms),
                      runtime.flow_run.id)
    get_run_logger().info("%s", outcome.summary)
    if not outcome.passed:  # a failed check is the run's outcome, not a crash: a Failed state, no traceback
        return Failed(message=outcome.summary)
    return {"version": version, "summary": outcome.summary, **(outcome.timing.metrics() if outcome.timing else {})}


def trigger(model: str, workspace: str, notify_block: str | None) -> DeploymentEventTrigger:
    """Run the release for the version the evaluate stage's event names."""
    fixed = {"workspace": workspace, **({"notify_block": notify_block} if notify_block else {})}
    return DeploymentEventTrigger(name=f"{model} champion moved", expect={EVENT},
                                  match={"prefect.resource.id": resource_id(model)},
                                  parameters={"model": "{{ event.payload.model }}",
                                              "version": "{{ event.payload.version }}", **fixed})


def problem(command: str, workspace: str, model: str, version: str | None, block: str | None = None) -> str | None:
    """One line for what would stop the command, before Prefect starts anything."""
    from mlflow.exceptions import MlflowException

    from flows.pipeline import prefect_api_problem

    if block is not None and len([part for part in block.split("/") if part]) != 2:
        return f"--notify-block: {block!r} is not <block type>/<block name> (e.g. custom-webhook/team)"
    if command == "serve" and not os.environ.get("PREFECT_API_URL"):
        return ("serve needs a Prefect server whose automations can start the release: set PREFECT_API_URL "
                "(`make serve` starts one on 127.0.0.1:4200)")
    if found := prefect_api_problem():
        return found
    if command == "run":
        client, _ = _client(workspace)
        try:
            client.get_model_version(model, version) if version else client.get_model_version_by_alias(model,
                                                                                                       "champion")
        except MlflowException:
            return (f"--version: {model} has no version {version}" if version else
                    f"{model} has no champion to release; name a version with --version")
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["serve", "run"])
    parser.add_argument("--workspace", default=".")
    parser.add_argument("--version", help="run: the version to release (default: the current champion)")
    parser.add_argument("--notify-block", help="a saved Prefect notification block, e.g. custom-webhook/team")
    args = parser.parse_args(argv)
    stop_on_interrupts()  # Ctrl-C and SIGTERM whatever this process inherited (Prefect's runner takes SIGTERM over)
    workspace = str(Path(args.workspace).resolve())
    with redacted_output():
        try:
            model = load_params(Path(workspace) / "params.yaml").evaluate.registered_model
            found = problem(args.command, workspace, model, args.version, args.notify_block)
        except UserError as exc:  # params.yaml missing or wrong, a tracking store that does not open
            found = str(exc)
        if found:
            print(f"flows.release: error: {found}", file=sys.stderr)
            sys.exit(2)
        if args.command == "run":
            state = release_flow(model, args.version, workspace, notify_block=args.notify_block, return_state=True)
            sys.exit(0 if state.is_completed() else 1)
        try:  # Prefect's runner takes the first Ctrl-C itself and returns once its deployment is paused
            release_flow.serve(name=DEPLOYMENT, triggers=[trigger(model, workspace, args.notify_block)],
                               parameters={"model": model, "workspace": workspace}, tags=["transferlab"],
                               description="Serve, check and measure a new champion; roll it back when a check "
                                           "fails.")
        except KeyboardInterrupt:  # a second Ctrl-C during that shutdown
            sys.exit(130)
        finally:
            print(f"flows.release: stopped serving {DEPLOYMENT}", file=sys.stderr)


if __name__ == "__main__":
    main()
