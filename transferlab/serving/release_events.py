"""The Prefect event a promotion emits; the release flow's deployment trigger waits for it.

MLflow's own webhooks (`model_version_alias.created`) would need a receiver that turns them into Prefect events,
and Prefect's webhooks are a Prefect Cloud feature: the stage that moves the alias emits the event instead."""

from __future__ import annotations

import logging

log = logging.getLogger("transferlab.release")

EVENT = "transferlab.champion.moved"


def resource_id(name: str) -> str:
    return f"mlflow.registered-model.{name}"


def announce_champion(name: str, version: str, previous: str | None) -> bool:
    """Emit the event to the Prefect server that PREFECT_API_URL names; False (and a log line) without one."""
    from prefect.settings import PREFECT_API_URL

    from transferlab.core.endpoints import redact, unreachable_reason

    api = PREFECT_API_URL.value()
    by_hand = f"run the release by hand: python -m flows.release run --version {version}"
    if not api:
        log.info("%s version %s is champion; no Prefect server (PREFECT_API_URL) to announce it to: %s", name,
                 version, by_hand)
        return False
    if reason := unreachable_reason(api):  # else the events worker would retry for its whole drain timeout
        log.warning("%s version %s is champion; the Prefect server at %s does not answer (%s): %s", name, version,
                    redact(api), reason, by_hand)
        return False
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    emit_event(event=EVENT, resource={"prefect.resource.id": resource_id(name), "prefect.resource.name": name},
               payload={"model": name, "version": version, "previous": previous})
    EventsWorker.drain_all(timeout=30)  # the stage's process ends right after: send before it does
    log.info("%s version %s is champion: announced to Prefect (%s)", name, version, EVENT)
    return True
