"""extract_features on a local Ray cluster through Prefect: the same features and cache key as one process; a killed
stage keeps its finished shards and redoes the rest."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PROJECT_ROOT, run_stages
from tests.process_trees import marked, survivors
from transferlab.core.params import BackboneParams, ExtractParams
from transferlab.modeling.extraction_cluster import ray_init_kwargs, shard_groups, uses_cluster
from transferlab.workspace import SMOKE_PARAMS, set_params


def test_the_stage_stays_in_its_process_unless_workers_or_a_cluster_are_named():
    assert not uses_cluster(ExtractParams(), env={})
    assert uses_cluster(ExtractParams(workers=2), env={})
    assert uses_cluster(ExtractParams(cluster_address="ray://head:10001"), env={})
    assert uses_cluster(ExtractParams(), env={"RAY_ADDRESS": "head:6379"})


def test_shard_groups_cover_every_shard_once_in_order():
    shards = [Path(f"train-{i:05d}.tfrecord") for i in range(7)]
    groups = shard_groups(shards, 3)
    assert [len(group) for group in groups] == [3, 3, 1] and sum(groups, []) == shards


def test_ray_workers_report_to_the_same_prefect_api_and_a_local_cluster_has_the_workers_asked_for(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    local = ray_init_kwargs(ExtractParams(workers=3), "http://127.0.0.1:4200/api", 3)
    assert local["num_cpus"] == 3 and local["runtime_env"]["env_vars"]["PREFECT_API_URL"] == "http://127.0.0.1:4200/api"
    joined = ray_init_kwargs(ExtractParams(cluster_address="ray://head:10001"), "http://x/api")
    assert "num_cpus" not in joined  # an existing cluster has its own size


# shards of 4 images, one task each: enough tasks for a kill to land between them; params.yaml's backbone
# (MobileNetV2, random weights), which each Ray worker builds in a third of ResNet50's time
MANY_SHARDS = {**SMOKE_PARAMS, "data.synthetic.images_per_class": 16, "data.shard_size": 4,
               "extract.shards_per_task": 1, "backbone.name": "mobilenet_v2", "compare.backbones": ["mobilenet_v2"]}


def _features(root: Path) -> dict:
    folder = root / "data" / "features" / "mobilenet_v2"
    meta = json.loads((folder / "meta.json").read_text())
    return {"meta": meta, "arrays": {path.name: dict(np.load(path)) for path in sorted(folder.glob("*.npz"))}}


def _stage(params: Path) -> list[str]:
    return [sys.executable, "-m", "stages.extract_features", "--params", str(params), "--no-track"]


def _stopped_at(params: Path, env: dict, resume: Path, shards: int, sent: signal.Signals) -> dict:
    """The cluster stage, sent `sent` (to it alone, as `kill` does) once the resume folder holds more than `shards`
    feature files: its exit code, its output and the processes of its tree still running after."""
    output = tempfile.TemporaryFile("w+")
    stage = subprocess.Popen(_stage(params), cwd=PROJECT_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    while len(list(resume.glob("*.npz"))) <= shards:  # a stage that hangs instead is failed by the pytest timeout
        if stage.poll() is not None:
            output.seek(0)
            raise AssertionError(f"the stage ended (exit {stage.returncode}) before keeping a shard:\n"
                                 f"{output.read()[-3000:]}")
        time.sleep(0.01)
    stage.send_signal(sent)
    stage.wait()
    output.seek(0)
    return {"code": stage.returncode, "output": output.read(), "left": survivors(env)}


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """One process's features, and a 2-worker cluster's: stopped by SIGTERM once its first shard was kept, killed
    by SIGKILL once it kept another, then run again."""
    root = tmp_path_factory.mktemp("cluster") / "one"
    run_stages(root, MANY_SHARDS, ("download", "preprocess", "extract_features"))
    cluster = root.parent / "cluster"
    shutil.copytree(root, cluster)
    shutil.rmtree(cluster / "data" / "features")
    set_params(cluster / "params.yaml", {"extract.workers": 2})
    resume = cluster / ".cache" / "transferlab" / "features" / _features(root)["meta"]["cache_key"]
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    stopped = _stopped_at(cluster / "params.yaml", marked(env), resume, 0, signal.SIGTERM)
    killed = _stopped_at(cluster / "params.yaml", marked(env), resume, len(list(resume.glob("*.npz"))), signal.SIGKILL)
    kept = len(list(resume.glob("*.npz")))
    written_after_kill = (cluster / "data" / "features" / "mobilenet_v2").exists()
    done = subprocess.run(_stage(cluster / "params.yaml"), cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"one": _features(root), "cluster": _features(cluster), "log": done.stderr + done.stdout, "kept": kept,
            "written_after_kill": written_after_kill, "stopped": stopped, "killed": killed}


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the fixture waits on the cluster: a hang fails, setup included
def test_a_two_worker_ray_cluster_extracts_what_one_process_does_under_the_same_cache_key(extracted):
    one, cluster = extracted["one"], extracted["cluster"]
    assert "on a local Ray cluster of 2 workers" in extracted["log"]
    assert cluster["meta"]["cache_key"] == one["meta"]["cache_key"]
    assert cluster["meta"]["counts"] == one["meta"]["counts"] and len(one["arrays"]) >= 10
    assert cluster["arrays"].keys() == one["arrays"].keys()
    for name, arrays in one["arrays"].items():
        assert list(cluster["arrays"][name]["keys"]) == list(arrays["keys"])
        np.testing.assert_array_equal(cluster["arrays"][name]["labels"], arrays["labels"])
        np.testing.assert_allclose(cluster["arrays"][name]["features"], arrays["features"], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the fixture waits on the cluster: a hang fails, setup included
def test_a_killed_cluster_stage_keeps_its_finished_shards_and_redoes_only_the_rest(extracted):
    kept, total = extracted["kept"], len(extracted["one"]["arrays"])
    assert 1 <= kept < total and not extracted["written_after_kill"]
    assert f"extracting {total - kept} shards" in extracted["log"]
    assert f"the cluster computed {total - kept} shards" in extracted["log"]  # the kept ones were not redone
    assert extracted["cluster"]["meta"]["resumed_shards"] == kept


def test_a_ray_workers_later_tasks_reuse_the_backbone_its_first_task_built(tmp_path, monkeypatch):
    """A task used to build and trace the backbone again; a worker process now keeps the one its first task built,
    and gives the same features with it. Another backbone setting builds its own."""
    import io

    from transferlab.data.prepared import shard_files, shard_sizes
    from transferlab.modeling import extraction_cluster, features

    # four shards of 3 images; params.yaml's backbone, random weights, as in MANY_SHARDS
    root = tmp_path / "ws"
    run_stages(root, {**SMOKE_PARAMS, "data.synthetic.images_per_class": 4, "data.shard_size": 3,
                      "backbone.name": "mobilenet_v2", "compare.backbones": ["mobilenet_v2"]})
    prepared = root / "data" / "prepared"
    shards, sizes = [str(path) for path in shard_files(prepared, "train")], shard_sizes(prepared)
    built = []
    extractor = features.feature_extractor
    monkeypatch.setattr(features, "feature_extractor", lambda *args: built.append(args) or extractor(*args))
    extraction_cluster.worker_forward.cache_clear()
    cfg = BackboneParams(name="mobilenet_v2", weights="none")

    def task(group: list[str], seed: int = 0) -> dict[str, np.ndarray]:
        [(_, npz)] = extraction_cluster.extract_group(group, sizes, cfg, 32, str(root), seed, False)
        return dict(np.load(io.BytesIO(npz)))

    first = task(shards[:1])
    task(shards[1:2])
    again = task(shards[:1])
    assert len(built) == 1 and len(shards) >= 2
    np.testing.assert_array_equal(again["features"], first["features"])
    task(shards[:1], seed=1)  # random weights differ by seed: another backbone
    assert len(built) == 2


def test_a_named_cluster_that_does_not_answer_is_one_line_before_ray_starts(monkeypatch):
    """Issue 31: Ray's client reconnects for minutes; the stage names the setting and stops before it starts."""
    from tests.conftest import closed_port
    from transferlab.core.errors import UserError
    from types import SimpleNamespace

    import prefect_ray

    from transferlab.modeling.extraction_cluster import check_cluster_answers, extract_on_cluster

    def ray_started(*args, **kwargs):
        raise AssertionError("the Ray task runner was created for a cluster that does not answer")

    monkeypatch.setattr(prefect_ray, "RayTaskRunner", ray_started)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    address = f"ray://user:secret@127.0.0.1:{closed_port()}"
    with pytest.raises(UserError, match=r"^extract.cluster_address ray://\*\*\*@127.0.0.1:\d+: no Ray cluster "
                                        r"answers \(Connection refused\)") as caught:
        extract_on_cluster(SimpleNamespace(todo=[Path("x")]), None, 32, Path("."), 0,
                           ExtractParams(cluster_address=address), print)
    assert "secret" not in str(caught.value)
    monkeypatch.setenv("RAY_ADDRESS", address)
    with pytest.raises(UserError, match="^RAY_ADDRESS "):
        check_cluster_answers(ExtractParams())


@pytest.fixture
def grpc_port():
    """A port where a gRPC server answers, as Ray's GCS and client server do."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    server = grpc.server(ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("0.0.0.0:0")  # Ray resolves a loopback `auto` address to the host's own
    server.start()
    yield port
    server.stop(grace=None)


def test_a_cluster_port_that_accepts_and_never_answers_is_one_line_in_seconds(monkeypatch, grpc_port):
    """Issue 42: the check only opened a TCP connection, so a port that accepts and never answers passed it and
    Ray's client hung for 150 s, deaf to SIGTERM. The check now waits for gRPC's handshake, as Ray's client does."""
    import socket

    from transferlab.core.errors import UserError
    from transferlab.modeling import extraction_cluster

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(extraction_cluster, "RAY_HANDSHAKE_S", 0.5)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"ray://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(UserError, match=rf"^extract.cluster_address {address}: no Ray cluster answers \(it accepts "
                                            rf"connections but gives no gRPC answer within 0.5 s\); start it"):
            extraction_cluster.check_cluster_answers(ExtractParams(cluster_address=address))
    extraction_cluster.check_cluster_answers(ExtractParams(cluster_address=f"127.0.0.1:{grpc_port}"))


def test_ray_address_auto_without_a_cluster_is_one_line_and_with_one_is_checked(monkeypatch, grpc_port):
    """Issue 42: `RAY_ADDRESS=auto` with no cluster on the machine was Ray's ConnectionError traceback."""
    from ray._private import services

    from transferlab.core.errors import UserError
    from transferlab.modeling.extraction_cluster import check_cluster_answers

    monkeypatch.setenv("RAY_ADDRESS", "auto")
    found = {}  # what Ray's discovery sees: the last `ray start` of this machine, and running GCS processes
    monkeypatch.setattr(services, "find_gcs_addresses", lambda: set())
    monkeypatch.setattr(services, "find_bootstrap_address", lambda temp_dir: found.get("address"))
    with pytest.raises(UserError, match="^RAY_ADDRESS auto: no Ray cluster runs on this machine; start one"):
        check_cluster_answers(ExtractParams())
    found["address"] = f"127.0.0.1:{grpc_port}"
    check_cluster_answers(ExtractParams())


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the fixture waits on the cluster: a hang fails, setup included
def test_a_stopped_or_killed_cluster_stage_leaves_no_ray_or_prefect_process_behind(extracted):
    """Issue 42: a killed stage left Prefect's temporary server (the next run's "database is locked" tracebacks) and
    Ray's agents; ray.init's own SIGTERM handler turned a stop into a Prefect crash, absl's lines and exit -6."""
    stopped, killed = extracted["stopped"], extracted["killed"]
    assert stopped["code"] == 130, stopped["output"][-3000:]
    assert stopped["output"].strip().splitlines()[-1].startswith("extract_features: interrupted;")
    assert "Traceback" not in stopped["output"] and "SIGTERM received" not in stopped["output"], stopped["output"]
    assert stopped["left"] == [] and killed["left"] == [] and killed["code"] == -signal.SIGKILL
    assert "database is locked" not in extracted["log"]


def test_a_local_cluster_gets_no_more_workers_than_the_cores_and_memory_there_are(monkeypatch):
    """Issue 42: `extract.workers: 1024` started a Ray cluster of 1024 CPUs, whose idle workers took 9.5 GB on 2
    cores. The counts are this test's, not the machine's."""
    from types import SimpleNamespace

    import prefect_ray
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from transferlab.core import resources
    from transferlab.modeling.extraction_cluster import extract_on_cluster

    class RayNotStarted(Exception):
        pass

    asked = {}

    def recording(address, init_kwargs):
        asked.update(init_kwargs, address=address)
        raise RayNotStarted

    monkeypatch.setattr(prefect_ray, "RayTaskRunner", recording)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(resources, "usable_cores", lambda: 2)
    monkeypatch.setattr(resources, "available_memory", lambda: 22 * 10**9)
    logged = []
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}), pytest.raises(RayNotStarted):
        extract_on_cluster(SimpleNamespace(todo=[Path("x")]), None, 32, Path("."), 0, ExtractParams(workers=1024),
                           logged.append)
    assert asked["num_cpus"] == 2 and asked["address"] is None
    assert logged == ["extracting 1 shard in 1 task on a local Ray cluster of 2 workers"]


def test_the_temporary_prefect_server_gets_time_for_a_cold_start(monkeypatch):
    """Prefect's own 20 s limit failed the cluster stage on two busy cores (a cold start took 16 to 21 s)."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from transferlab.modeling.extraction_cluster import TEMPORARY_SERVER_START_S, prefect_api

    class NotStarted(Exception):
        pass

    asked = []

    def start(self, timeout=None):
        asked.append(timeout)
        raise NotStarted

    monkeypatch.setattr(SubprocessASGIServer, "start", start)
    with temporary_settings(restore_defaults={PREFECT_API_URL}), pytest.raises(NotStarted):
        with prefect_api():
            pass
    assert asked == [TEMPORARY_SERVER_START_S] and TEMPORARY_SERVER_START_S >= 60
