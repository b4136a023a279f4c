"""`transferlab compare`: the newest pipeline runs side by side, their headline figures, the registry's decision
and only the params that differ between them (the whole params.yaml is on every pipeline run)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from transferlab.core.errors import UserError
from transferlab.tracking.tags import PARENT_TAG, PIPELINE_ROLE, ROLE_TAG

REGISTRY_TAGS = ("registry.version", "registry.alias")


@dataclass(frozen=True)
class PipelineRun:
    """What the table shows of one pipeline run."""

    run_id: str
    name: str
    started_ms: int
    status: str
    metrics: Mapping[str, float]
    params: Mapping[str, str]
    registry: Mapping[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        started = datetime.datetime.fromtimestamp(self.started_ms / 1000, datetime.timezone.utc)
        return f"{self.run_id[:6]} {started:%m-%d %H:%M}"


def changed_params(runs: Sequence[PipelineRun]) -> list[str]:
    """The params whose value is not the same on every run (a key missing from a run counts as a change)."""
    keys = sorted({key for run in runs for key in run.params})
    return [key for key in keys if len({run.params.get(key) for run in runs}) > 1]


def comparison(runs: Sequence[PipelineRun]) -> pd.DataFrame:
    """One column per run, newest first; rows: status, registry, every headline figure, the changed params."""
    figures = sorted({key for run in runs for key in run.metrics})
    rows: dict[str, list] = {"pipeline": [run.name for run in runs], "status": [run.status for run in runs],
                             "registry": [_registry(run.registry) for run in runs]}
    rows |= {name: [_figure(run.metrics.get(name)) for run in runs] for name in figures}
    rows |= {f"param {key}": [run.params.get(key, "-") for run in runs] for key in changed_params(runs)}
    return pd.DataFrame.from_dict(rows, orient="index", columns=[run.label for run in runs])


def _registry(tags: Mapping[str, str]) -> str:
    return f"v{tags['registry.version']} {tags['registry.alias']}" if all(k in tags for k in REGISTRY_TAGS) else "-"


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def pipeline_runs(client, experiment_id: str, limit: int) -> list[PipelineRun]:
    """The newest `limit` pipeline runs of the experiment, each with the registry tags of its stage runs."""
    from mlflow.store.tracking import SEARCH_MAX_RESULTS_THRESHOLD

    if limit > SEARCH_MAX_RESULTS_THRESHOLD:
        raise UserError(f"--last {limit}: MLflow returns at most {SEARCH_MAX_RESULTS_THRESHOLD} runs from one search; "
                        f"ask for that many or fewer")
    found = client.search_runs([experiment_id], f"tags.`{ROLE_TAG}` = '{PIPELINE_ROLE}'", max_results=limit,
                               order_by=["attributes.start_time DESC"])
    return [PipelineRun(run.info.run_id, run.data.tags.get("mlflow.runName", ""), run.info.start_time,
                        run.info.status, run.data.metrics, run.data.params,
                        _registry_tags(client, experiment_id, run.info.run_id)) for run in found]


def _registry_tags(client, experiment_id: str, parent: str) -> dict[str, str]:
    children = client.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = '{parent}'",
                                  order_by=["attributes.start_time DESC"])
    for child in children:
        if all(key in child.data.tags for key in REGISTRY_TAGS):
            return {key: child.data.tags[key] for key in REGISTRY_TAGS}
    return {}
