"""Feature extraction on a Ray cluster, through Prefect's own integration (prefect-ray's RayTaskRunner).

One Prefect task per group of prepared shards (`extract.shards_per_task`); Ray places the tasks on its workers
and runs a task again when its worker dies. Each task returns its shards' feature files, and this process keeps
each one in the resume folder as it arrives, so a killed stage loses only unfinished groups. Without an address
Ray starts a local cluster of `extract.workers` workers; with `extract.cluster_address` (or RAY_ADDRESS) it joins
an existing one, whose nodes read the prepared shards at the same path (shared storage) and have transferlab.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from transferlab.core.child_processes import ending_with_this_process_while
from transferlab.core.endpoints import redact, unanswered_grpc
from transferlab.core.errors import DataError, UserError
from transferlab.core.interrupts import current_handlers, put_back
from transferlab.core.params import BackboneParams, ExtractParams
from transferlab.core.resources import capped_workers
from transferlab.core.wording import plural
from transferlab.modeling.features import ExtractionPlan, shard_features, traced_backbone, write_shards

RAY_ADDRESS = "RAY_ADDRESS"


def uses_cluster(settings: ExtractParams, env=os.environ) -> bool:
    """Whether extraction leaves the stage's process: workers asked for, or a cluster named."""
    return bool(settings.workers or settings.cluster_address or env.get(RAY_ADDRESS))


def shard_groups(todo: list[Path], per_task: int) -> list[list[Path]]:
    return [todo[start:start + per_task] for start in range(0, len(todo), per_task)]


def extract_group(shards: list[str], sizes: dict[str, int], cfg: BackboneParams, image_size: int, root: str,
                  seed: int, frozen: bool) -> list[tuple[str, bytes]]:
    """A cluster task's work: the feature files (.npz bytes) of its shards."""
    paths = [Path(shard) for shard in shards]
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise DataError(f"{missing[0]}: not readable on this Ray node; the cluster's nodes must see the workspace at "
                        f"the same path (shared storage)")
    forward = worker_forward(cfg.model_dump_json(), image_size, root, seed, frozen)
    return [(path.name, npz) for path, npz in shard_features(paths, sizes, cfg, image_size, Path(root), seed, frozen,
                                                             forward=forward)]


@functools.lru_cache(maxsize=1)
def worker_forward(backbone: str, image_size: int, root: str, seed: int, frozen: bool):
    """The traced backbone of a Ray worker process: built by its first task, reused by the later ones (a stage's
    tasks share its workers; Ray gives each job workers of its own, so a cached backbone never outlives its run)."""
    return traced_backbone(BackboneParams.model_validate_json(backbone), image_size, Path(root), seed, frozen)


# A cold start of Prefect's temporary server migrates a new database: 16 to 21 s measured on two busy cores, where
# Prefect's own limit of 20 s failed the stage ("Timed out while attempting to connect to ephemeral Prefect API")
TEMPORARY_SERVER_START_S = 120


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """The Prefect API the flow and its Ray workers report to: the configured one, or a temporary local server
    started here once (otherwise each Ray worker would start its own)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield PREFECT_API_URL.value()
        return
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as STARTUP_S

    server = SubprocessASGIServer()
    server.start(timeout=max(STARTUP_S.value(), TEMPORARY_SERVER_START_S))
    try:  # stopped at the end, or by a watcher if this process is killed (it would hold Prefect's database)
        with ending_with_this_process_while(server.server_process.pid), \
                temporary_settings({PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        server.stop()


# A local Ray worker's peak resident memory: the worker process, TensorFlow and Keras, and the traced backbone with
# a batch of images in flight (MobileNetV2 at 224 px, measured: see RAY_WORKER_BYTES in the README's scaling notes).
RAY_WORKER_BYTES = 1.0e9


def local_workers(settings: ExtractParams) -> int:
    """The local cluster's workers: extract.workers, lowered to the cores and the free memory there are (Ray starts
    one worker per CPU it is given, whether a task needs it or not)."""
    return capped_workers(settings.workers or 1, "extract.workers", RAY_WORKER_BYTES)


def ray_init_kwargs(settings: ExtractParams, api_url: str, workers: int = 1) -> dict:
    env = {"PREFECT_API_URL": api_url, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    local = {} if settings.cluster_address or os.environ.get(RAY_ADDRESS) else {
        "num_cpus": workers, "include_dashboard": False}
    return {**local, "runtime_env": {"env_vars": env}}


RAY_CLIENT_PORT = 10001
RAY_HANDSHAKE_S = 5.0


def check_cluster_answers(settings: ExtractParams) -> None:
    """A named Ray cluster that does not answer is one line in seconds, not Ray's minutes of reconnecting."""
    source = "extract.cluster_address" if settings.cluster_address else RAY_ADDRESS
    address = settings.cluster_address or os.environ.get(RAY_ADDRESS)
    if address == "auto":
        address = _found_by_ray(source)
    if address and (reason := unanswered_grpc(address, RAY_CLIENT_PORT, RAY_HANDSHAKE_S)):
        raise UserError(f"{source} {redact(address)}: no Ray cluster answers ({reason}); start it (`ray start "
                        f"--head --ray-client-server-port {RAY_CLIENT_PORT}`) or leave the setting empty")


def _found_by_ray(source: str) -> str:
    """The cluster `auto` means, found the way `ray.init` finds it (the last `ray start` on this machine)."""
    from ray._private.services import get_ray_address_from_environment  # what ray.init(address="auto") asks

    try:
        return get_ray_address_from_environment("auto", None)
    except ConnectionError:
        raise UserError(f"{source} auto: no Ray cluster runs on this machine; start one (`ray start --head`), name "
                        f"its address, or leave the setting empty for a local cluster of extract.workers") from None


def extract_on_cluster(plan: ExtractionPlan, cfg: BackboneParams, image_size: int, root: Path, seed: int,
                       settings: ExtractParams, log: Callable[[str], None]) -> None:
    """Extract `plan.todo` with one Prefect task per shard group on Ray; finished groups land in the resume folder."""
    from prefect import flow, task
    from prefect.cache_policies import NONE
    from prefect.futures import as_completed
    from prefect_ray import RayTaskRunner

    groups = shard_groups(plan.todo, settings.shards_per_task)
    address = settings.cluster_address or os.environ.get(RAY_ADDRESS)
    check_cluster_answers(settings)
    workers = 0 if address else local_workers(settings)
    cluster = f"the Ray cluster at {redact(address)}" if address else \
        f"a local Ray cluster of {plural(workers, 'worker')}"
    log(f"extracting {plural(len(plan.todo), 'shard')} in {plural(len(groups), 'task')} on {cluster}")
    group_task = task(extract_group, name="extract-shard-group", cache_policy=NONE)
    handlers = current_handlers()
    with prefect_api() as api_url:
        runner = RayTaskRunner(address=address, init_kwargs=ray_init_kwargs(settings, api_url, workers))

        @flow(name="extract-features", task_runner=runner, validate_parameters=False)
        def extract_features_on_ray() -> int:
            put_back(handlers)  # the runner's ray.init replaced SIGTERM's: a stop is one line and Ray's shutdown
            futures = [group_task.submit([str(path) for path in group], plan.sizes, cfg, image_size, str(root), seed,
                                         plan.frozen) for group in groups]
            computed = 0
            for future in as_completed(futures):
                shards = future.result()
                write_shards(plan, shards)
                computed += len(shards)
                log(f"{len(plan.shards) - len(plan.todo)} of {plural(len(plan.shards), 'shard')} done")
            return computed

        # what the tasks computed, not what the folder holds: a kept shard computed again would show here
        log(f"the cluster computed {extract_features_on_ray()} shards")
