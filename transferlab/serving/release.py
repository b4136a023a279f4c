"""A release of a registered version: served by MLflow's own server, checked and measured, the figures recorded on
the version and in an MLflow run; when a check fails, `champion` goes back to the version it replaced.
Prefect-free: flows/release.py runs it as a deployment started by the promotion's event."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from transferlab.core.errors import UserError
from transferlab.core.redaction import scrub
from transferlab.serving.release_cases import load_cases
from transferlab.serving.release_check import ReleaseCheckFailed, Timing, check_cases, check_example, measure
from transferlab.serving.server import served
from transferlab.tracking.promotion import roll_back

STATUS_TAG, SUMMARY_TAG = "release.status", "release.summary"
FLOW_RUN_TAG = "release.flow_run"  # the flow run whose release the summary tells: a notice tells no other's
PASSED, ROLLED_BACK = "passed", "rolled_back"
MLMODEL = "MLmodel"


@dataclass(frozen=True)
class ReleaseSettings:
    concurrency: int = 4  # requests in flight at once while measuring
    requests: int = 32  # one-image requests measured
    tolerance: float = 0.01  # largest difference of a class probability from evaluate's answer
    max_p95_ms: float | None = None  # a slower p95 latency fails the release; None: measured only

    def __post_init__(self) -> None:
        for name, value in (("concurrency", self.concurrency), ("requests", self.requests)):
            if value < 1:
                raise UserError(f"{name}: {value} must be at least 1")
        for name, value in (("tolerance", self.tolerance), ("max_p95_ms", self.max_p95_ms)):
            if value is not None and not 0 <= value < float("inf"):
                raise UserError(f"{name}: {value} must be a finite number of at least 0")


@dataclass(frozen=True)
class Outcome:
    version: str
    passed: bool
    summary: str  # one line: what a notification says
    timing: Timing | None
    champion: str | None  # the version champion points at afterwards


def model_files(client, name: str, version: str, folder: Path) -> Path:
    """The version's model downloaded into `folder`; ReleaseCheckFailed (one line) when its files are missing."""
    import mlflow
    from mlflow.exceptions import MlflowException

    where = scrub(client.get_model_version_download_uri(name, version))  # the summary becomes a tag and a notice
    try:
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(folder)))
    except (MlflowException, OSError) as exc:
        reason = scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        raise ReleaseCheckFailed(f"{name} version {version}: its model files could not be fetched from {where} "
                                 f"({type(exc).__name__}: {reason})") from None
    if not (local / MLMODEL).is_file():  # MLflow returns an empty folder for artifacts that are gone
        raise ReleaseCheckFailed(f"{name} version {version}: its model files are missing ({where} holds no "
                                 f"{MLMODEL})")
    return local


def serving_input(local: Path) -> str | None:
    """The registered input example of a downloaded model as MLflow's server takes it (serving_input_example.json)."""
    import mlflow

    return mlflow.models.Model.load(str(local)).get_serving_input(str(local))


def check(client, name: str, version: str, tracking_uri: str, settings: ReleaseSettings) -> Timing:
    """Serve `version` and run every check; ReleaseCheckFailed or UserError (one line) at the first that fails."""
    uri = f"models:/{name}/{version}"
    with tempfile.TemporaryDirectory() as folder:
        example = serving_input(model_files(client, name, version, Path(folder, "model")))
        cases = load_cases(client, client.get_model_version(name, version).run_id, Path(folder))
        with served(uri, tracking_uri) as url:
            if example is not None:
                check_example(url, example)
            worst = check_cases(url, cases, settings.tolerance)
            if not cases and example is None:
                raise ReleaseCheckFailed(f"{uri} has no input example and no logged test images: nothing to post")
            timing = replace(measure(url, cases[0].image if cases else _example_image(example),
                                     settings.concurrency, settings.requests), difference=worst)
    if settings.max_p95_ms is not None and timing.p95_ms > settings.max_p95_ms:
        raise ReleaseCheckFailed(f"p95 latency {timing.p95_ms:.0f} ms is above max_p95_ms {settings.max_p95_ms:g}")
    return timing


def _example_image(serving_input_json: str) -> bytes:
    import base64
    import json

    rows = json.loads(serving_input_json)["dataframe_split"]["data"]
    return base64.b64decode(rows[0][0])


def release(client, name: str, version: str, tracking_uri: str, settings: ReleaseSettings,
            flow_run: str | None = None) -> Outcome:
    """Check `version`, record the outcome on it; roll `champion` back when a check failed."""
    try:
        timing, problem = check(client, name, version, tracking_uri, settings), None
    except (ReleaseCheckFailed, UserError) as exc:
        timing, problem = None, str(exc)
    if problem is None:
        summary = (f"{name} version {version} released: p50 {timing.p50_ms:.0f} ms, p95 {timing.p95_ms:.0f} ms, "
                   f"{timing.per_second:.1f} requests/s at concurrency {timing.concurrency}")
        outcome = Outcome(version, True, summary, timing, version)
    else:
        champion = roll_back(client, name, version, problem)
        summary = f"{name} version {version} rolled back (champion: {champion or 'none'}): {problem}"
        outcome = Outcome(version, False, summary, None, champion)
    record(client, name, outcome, flow_run)
    return outcome


def record(client, name: str, outcome: Outcome, flow_run: str | None) -> None:
    """An MLflow run with the figures, and `release.*` tags on the version that point to it."""
    import mlflow

    mlflow.set_experiment(f"{name}-releases")
    with mlflow.start_run(run_name=f"release {name} v{outcome.version}") as run:
        mlflow.set_tags({"registered_model": name, "version": outcome.version, STATUS_TAG: _status(outcome),
                         SUMMARY_TAG: outcome.summary, **({"prefect.flow_run": flow_run} if flow_run else {})})
        if outcome.timing:
            mlflow.log_params({"concurrency": outcome.timing.concurrency, "requests": outcome.timing.requests})
            mlflow.log_metrics(outcome.timing.metrics())
    tags = {STATUS_TAG: _status(outcome), SUMMARY_TAG: outcome.summary, "release.run_id": run.info.run_id,
            **({FLOW_RUN_TAG: flow_run} if flow_run else {}),
            **{f"release.{key}": f"{value:.4g}" for key, value in (outcome.timing.metrics() if outcome.timing
                                                                    else {}).items()}}
    for key, value in tags.items():
        client.set_model_version_tag(name, outcome.version, key, value)


def _status(outcome: Outcome) -> str:
    return PASSED if outcome.passed else ROLLED_BACK


def notice(tags: dict[str, str], flow_run: str, otherwise: str) -> str:
    """What a notification of `flow_run` says: the summary it recorded on the version, else `otherwise` (the run
    ended before recording one: the summary there is an earlier release's)."""
    if tags.get(FLOW_RUN_TAG) == str(flow_run) and tags.get(SUMMARY_TAG):
        return tags[SUMMARY_TAG]
    return otherwise
