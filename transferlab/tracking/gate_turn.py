"""The promotion gates of one registered model take turns, in the tracking store itself: each registers its version
first, tagged pending with its owner's process identity, then waits while a lower-numbered version is pending with
a live owner. The store numbers versions atomically (a sqlite file or a tracking server that several clones share
alike), so the numbers order the gates without a lock file; a version whose owner is gone is deleted."""

from __future__ import annotations

import logging
import time

import mlflow
from mlflow.exceptions import MlflowException

from transferlab.tracking.processes import is_alive, process_identity

log = logging.getLogger("transferlab.registry")

GATE_STATUS, PENDING, DONE = "gate.status", "pending", "done"
OWNER_TAG = "gate.owner"  # host:pid:start time of the process gating a pending version
# A gate holds its turn for seconds (tags and an alias); one pending longer was abandoned on a host whose
# processes we cannot see, and is passed over (not deleted: only its own host can tell that its owner is gone).
ABANDONED_AFTER_S = 600
POLL_S = 0.5


def pending_versions(client, name: str) -> list:
    try:
        return client.search_model_versions(f"name = '{name}' and tags.`{GATE_STATUS}` = '{PENDING}'")
    except MlflowException:  # no such registered model yet
        return []


def owner_gone(version) -> bool:
    """Whether the process gating `version` has ended (no owner recorded: a gate from before owners were)."""
    owner = version.tags.get(OWNER_TAG)
    return owner is None or not is_alive(owner)


def discard_interrupted(client, name: str) -> list[str]:
    """Delete the versions whose gate was interrupted before it finished: pending, their owner gone. A live
    owner's version is another gate at work and stays. The logged model stays in its run."""
    gone = [version for version in pending_versions(client, name) if owner_gone(version)]
    for version in gone:
        client.delete_model_version(name, version.version)
        log.warning("registered model %s version %s: its registration was interrupted before the gate finished; "
                    "deleted (the model itself stays logged in run %s)", name, version.version, version.run_id)
    return [str(version.version) for version in gone]


def register_pending(model_uri: str, name: str, tags: dict[str, str]):
    """A new version of `name`, tagged (in the creating request) pending and owned by this process."""
    return mlflow.register_model(model_uri, name, tags={**tags, GATE_STATUS: PENDING, OWNER_TAG: process_identity()})


def _pause() -> None:
    time.sleep(POLL_S)


def wait_for_turn(client, name: str, mine) -> None:
    """Return once no version numbered below `mine` is pending with a live owner."""
    started, told = time.monotonic(), set()
    while True:
        waited = time.monotonic() - started
        ahead = [version for version in pending_versions(client, name)
                 if int(version.version) < int(mine.version) and not owner_gone(version)]
        # the store's clock dates both versions: no skew between this host and the server
        age = {version.version: (mine.creation_timestamp - version.creation_timestamp) / 1000 + waited
               for version in ahead}
        for version in ahead:
            if age[version.version] >= ABANDONED_AFTER_S and version.version not in told:
                log.warning("registered model %s version %s has been pending for %.0f s (owner %s): its gate is "
                            "taken as abandoned", name, version.version, age[version.version],
                            version.tags.get(OWNER_TAG))
                told.add(version.version)
        waiting = [version for version in ahead if age[version.version] < ABANDONED_AFTER_S]
        if not waiting:
            return
        if "waiting" not in told:
            log.info("registered model %s version %s: waiting for the gate of version %s to finish", name,
                     mine.version, waiting[0].version)
            told.add("waiting")
        _pause()
