"""Which tf.distribute strategy trains the models: one device, several GPUs, or several machines.

The choice follows the environment, the way TensorFlow's own tools do: `TF_CONFIG` set means this process
is one worker of a cluster (MultiWorkerMirroredStrategy); more than one GPU means MirroredStrategy;
anything else is the default one-device strategy. Batch sizes in params.yaml are per replica.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from transferlab.core.errors import UserError

TF_CONFIG = "TF_CONFIG"
log = logging.getLogger("transferlab.distribution")


def cluster_task(env: Mapping[str, str] = os.environ) -> tuple[str, int] | None:
    """(task type, index) of this process in a TF_CONFIG cluster; None when TF_CONFIG is not set."""
    raw = env.get(TF_CONFIG, "").strip()
    if not raw:
        return None
    try:
        config = json.loads(raw)
        task = config["task"]
        kind, index = str(task["type"]), int(task["index"])
        workers = config["cluster"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{TF_CONFIG}: not a cluster description ({exc.__class__.__name__}: {exc}); "
                        f"expected {{\"cluster\": {{\"worker\": [\"host:port\", ...]}}, "
                        f"\"task\": {{\"type\": \"worker\", \"index\": 0}}}}") from None
    if kind not in workers or not 0 <= index < len(workers[kind]):
        raise UserError(f"{TF_CONFIG}: task {kind}/{index} is not in the cluster {sorted(workers)}")
    return kind, index


def is_chief(env: Mapping[str, str] = os.environ) -> bool:
    """Whether this process writes outputs and tracks: the chief, or worker 0 of a cluster without one."""
    task = cluster_task(env)
    if task is None:
        return True
    kind, index = task
    has_chief = "chief" in json.loads(env[TF_CONFIG])["cluster"]
    return kind == "chief" or (not has_chief and kind == "worker" and index == 0)


def choose_strategy(devices: Sequence[str] | None = None, env: Mapping[str, str] = os.environ) -> Any:
    """The strategy for this process; `devices` forces MirroredStrategy over those devices (tests, CPUs)."""
    import tensorflow as tf

    if devices:
        return tf.distribute.MirroredStrategy(list(devices))
    if cluster_task(env) is not None:
        log.warning(exposure_warning(env))
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def exposure_warning(env: Mapping[str, str] = os.environ) -> str:
    """What a cluster member must be told: TensorFlow's gRPC server listens on every interface.

    TensorFlow (2.21 included) binds it to "0.0.0.0:<port>" in grpc_server_lib.cc whatever host the cluster spec
    names, and offers no setting for the address; only a firewall keeps the unauthenticated port private."""
    config = json.loads(env[TF_CONFIG])
    kind, index = cluster_task(env)
    address = config["cluster"][kind][index]
    port = address.rsplit(":", 1)[-1]
    return (f"TF_CONFIG: TensorFlow's gRPC server for {kind} {index} listens on all interfaces (*:{port}), not only "
            f"{address}: TensorFlow has no bind-address setting; keep port {port} behind a firewall")


def global_batch_size(per_replica: int, strategy: Any) -> int:
    """Keras splits each batch across replicas, so the batch it is given is the global one."""
    return per_replica * strategy.num_replicas_in_sync


def strategy_tags(strategy: Any) -> dict[str, str]:
    return {"distribute.strategy": type(strategy).__name__,
            "distribute.replicas": str(strategy.num_replicas_in_sync)}
