"""Which tf.distribute strategy trains the models: one device, several GPUs, or several machines.

The choice follows the environment, the way TensorFlow's own tools do: `TF_CONFIG` set means this process
is one worker of a cluster (MultiWorkerMirroredStrategy); more than one GPU means MirroredStrategy;
anything else is the default one-device strategy. Batch sizes in params.yaml are per replica.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from transferlab.core.endpoints import unanswered_grpc
from transferlab.core.errors import UserError
from transferlab.core.interrupts import dispositions_while

TF_CONFIG = "TF_CONFIG"
# How long a cluster member waits for the others to start: a scheduler starts a cluster's tasks seconds apart.
PEER_WAIT, DEFAULT_PEER_WAIT_S = "TRANSFERLAB_PEER_WAIT_S", 120.0
log = logging.getLogger("transferlab.distribution")
EXPECTED = 'expected {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}'


def cluster_task(env: Mapping[str, str] = os.environ) -> tuple[str, int] | None:
    """(task type, index) of this process in a TF_CONFIG cluster; None when TF_CONFIG is not set."""
    raw = env.get(TF_CONFIG, "").strip()
    if not raw:
        return None
    try:
        config = json.loads(raw)
        task = config["task"]
        kind, index = str(task["type"]), int(task["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{TF_CONFIG}: not a cluster description ({exc.__class__.__name__}: {exc}); {EXPECTED}") \
            from None
    workers = cluster_spec(env)
    if kind not in workers or not 0 <= index < len(workers[kind]):
        raise UserError(f"{TF_CONFIG}: task {kind}/{index} is not in the cluster {sorted(workers)}")
    return kind, index


def cluster_spec(env: Mapping[str, str] = os.environ) -> dict[str, list[str]]:
    """TF_CONFIG's cluster: each job's list of "host:port" addresses (a job given as one string, or an address
    without a port, is a user error here rather than a traceback in TensorFlow)."""
    cluster = json.loads(env[TF_CONFIG]).get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise UserError(f"{TF_CONFIG}: cluster must map job names to address lists, got {json.dumps(cluster)}; "
                        f"{EXPECTED}")
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(_is_address(address) for address in addresses):
            raise UserError(f"{TF_CONFIG}: cluster.{job} must be a list of \"host:port\" strings (ports 1 to 65535), got "
                            f"{json.dumps(addresses)}; {EXPECTED}")
    return cluster


def _is_address(address: object) -> bool:
    host, _, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def is_chief(env: Mapping[str, str] = os.environ) -> bool:
    """Whether this process writes outputs and tracks: the chief, or worker 0 of a cluster without one."""
    task = cluster_task(env)
    if task is None:
        return True
    kind, index = task
    has_chief = "chief" in cluster_spec(env)
    return kind == "chief" or (not has_chief and kind == "worker" and index == 0)


def choose_strategy(devices: Sequence[str] | None = None, env: Mapping[str, str] = os.environ) -> Any:
    """The strategy for this process; `devices` forces MirroredStrategy over those devices (tests, CPUs)."""
    import tensorflow as tf

    if devices:
        return tf.distribute.MirroredStrategy(list(devices))
    if cluster_task(env) is not None:
        log.warning(exposure_warning(env))
        return multi_worker_strategy(env)
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def exposure_warning(env: Mapping[str, str] = os.environ) -> str:
    """What a cluster member must be told: TensorFlow's gRPC server listens on every interface.

    TensorFlow (2.21 included) binds it to "0.0.0.0:<port>" in grpc_server_lib.cc whatever host the cluster spec
    names, and offers no setting for the address; only a firewall keeps the unauthenticated port private."""
    kind, index = cluster_task(env)
    address = cluster_spec(env)[kind][index]
    port = address.rsplit(":", 1)[-1]
    return (f"TF_CONFIG: TensorFlow's gRPC server for {kind} {index} listens on all interfaces (*:{port}), not only "
            f"{address}: TensorFlow has no bind-address setting; keep port {port} behind a firewall")


def multi_worker_strategy(env: Mapping[str, str] = os.environ) -> Any:
    """MultiWorkerMirroredStrategy, once every other task of TF_CONFIG answers (see `await_peers`).

    TensorFlow's set-up waits in C++ for every task to join, with no end, holding the GIL (no Python handler or
    thread runs) and with its own SIGTERM handler (its preemption notifier). So the peers are waited for here
    first, in Python, and for TensorFlow's own call Ctrl-C gets its default action, which ends the process even
    in there."""
    import tensorflow as tf

    await_peers(env)
    log.info("%s: every task answers; forming the cluster", TF_CONFIG)
    # SIGTERM's default is replaced by TensorFlow's notifier within the call; it matters that ours is put back after
    with dispositions_while({signal.SIGTERM: signal.SIG_DFL, signal.SIGINT: signal.SIG_DFL}):
        return tf.distribute.MultiWorkerMirroredStrategy()


def await_peers(env: Mapping[str, str] = os.environ) -> None:
    """Wait until every other task of the cluster answers gRPC at its address (TensorFlow's server, or this
    function's stand-in in a task still waiting); a peer silent after TRANSFERLAB_PEER_WAIT_S is named in one line.
    A port that only accepts connections is not a peer: TensorFlow would wait on it for ever, deaf to SIGTERM."""
    kind, index = cluster_task(env)
    wait_s = peer_wait_s(env)
    deadline, silent, told = time.monotonic() + wait_s, _peers(env), False
    with _answering(f"{kind} {index}", cluster_spec(env)[kind][index]):
        while silent := {peer: reason for peer in silent if (reason := unanswered_grpc(peer[1], 0, timeout_s=1.0))}:
            if not told:
                log.warning("%s: waiting up to %g s for %s to answer", TF_CONFIG, wait_s,
                            ", ".join(f"{name} at {address}" for name, address in silent))
                told = True
            if time.monotonic() > deadline:
                named = "; ".join(f"{name} at {address} ({reason})" for (name, address), reason in silent.items())
                raise UserError(f"{TF_CONFIG}: no answer within {wait_s:g} s from {named}; start it or correct "
                                f"TF_CONFIG's cluster (the wait is {PEER_WAIT})")
            time.sleep(0.5)


@contextlib.contextmanager
def _answering(task: str, address: str) -> Iterator[None]:
    """A gRPC server without services on this task's port, on every interface as TensorFlow's will be, so the
    other tasks see this one answer until TensorFlow's own server takes the port over."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    port = int(address.rsplit(":", 1)[1])
    server = grpc.server(ThreadPoolExecutor(max_workers=1), options=[("grpc.so_reuseport", 0)])
    try:
        server.add_insecure_port(f"[::]:{port}")
    except RuntimeError:  # grpcio raises it for a port it cannot bind, with no reason
        raise UserError(f"{TF_CONFIG}: {task}'s port {port} ({address}) cannot be opened on this machine; is "
                        f"another process using it?") from None
    server.start()
    try:
        yield
    finally:
        server.stop(grace=None).wait()


def peer_wait_s(env: Mapping[str, str] = os.environ) -> float:
    """How long to wait for the other tasks: TRANSFERLAB_PEER_WAIT_S, or 120 s."""
    raw = env.get(PEER_WAIT, "")
    try:
        seconds = float(raw) if raw else DEFAULT_PEER_WAIT_S
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise UserError(f"{PEER_WAIT}: {raw!r} is not a number of seconds above 0")
    return seconds


def _peers(env: Mapping[str, str]) -> dict[tuple[str, str], str]:
    """Every other task of the cluster, as (`worker 1`, its address)."""
    own = cluster_task(env)
    return {(f"{kind} {index}", address): "" for kind, addresses in cluster_spec(env).items()
            for index, address in enumerate(addresses) if (kind, index) != own}


def global_batch_size(per_replica: int, strategy: Any) -> int:
    """Keras splits each batch across replicas, so the batch it is given is the global one."""
    return per_replica * strategy.num_replicas_in_sync


def strategy_tags(strategy: Any) -> dict[str, str]:
    return {"distribute.strategy": type(strategy).__name__,
            "distribute.replicas": str(strategy.num_replicas_in_sync)}
