"""Shared fixtures: the real assets in ../shared (skipped with a reason where absent) and small generated data."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from transferlab.workspace import SMOKE_PARAMS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _share_the_cores() -> None:
    """Under xdist, each worker (and every process it starts: stages, cluster workers) gets its share of the
    cores: TensorFlow's and BLAS' thread pools sized for the whole machine in every worker spin against each
    other (measured on 2 cores: test-fast 3:49 -> 3:31, a tenth less CPU). A variable already set wins."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        share = str(max(1, (os.cpu_count() or 1) // workers))
        for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                     "MKL_NUM_THREADS"):
            os.environ.setdefault(name, share)


_share_the_cores()

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ASSETS = PROJECT_ROOT.parent / "shared" / "assets"


@pytest.fixture(scope="session")
def assets() -> Path:
    if not (ASSETS / "SOURCES.md").is_file():
        pytest.skip(f"real assets not found at {ASSETS} (CI provides ../shared/assets)")
    return ASSETS


# Variables of the developer's shell that would send a test's runs, flows or experiments elsewhere.
FOREIGN_ENV = ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "PREFECT_HOME", "DVC_ROOT", "DVC_EXP_NAME", "TF_CONFIG",
               "TRANSFERLAB_PIPELINE_ID")


@pytest.fixture(scope="session", autouse=True)
def _isolated_session(tmp_path_factory):
    """Before any fixture of any scope: nothing in the suite tracks into the developer's MLflow, talks to
    their Prefect server, or writes into the checkout; every variable is restored afterwards."""
    home = tmp_path_factory.mktemp("session-env")
    saved = {name: os.environ.pop(name, None) for name in FOREIGN_ENV}
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow-session.db'}"
    os.environ["PREFECT_HOME"] = str(home / "prefect-home")
    yield
    for name, value in saved.items():
        os.environ.pop(name, None)
        if value is not None:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def _isolated_mlflow(tmp_path, monkeypatch):
    """A test that tracks gets its own backend, whatever an earlier test left behind (a stage run also sets
    MLflow's process-wide URI, which outranks the variable)."""
    import sys

    uri = f"sqlite:///{tmp_path / 'mlflow-test.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    if "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(uri)


# Session workspaces whose every test runs on the xdist worker that built it (built_workspace is instead built once
# for all workers, under a lock), by the group each belongs to: a test of both real-photo builds needs both on one
# worker.
SHARED_BUILDS = {"cats_dogs_pipeline": "real_photos", "oxford_head": "real_photos", "trained_head": "trained_head"}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups (its own hook turns them into node id suffixes)
def pytest_collection_modifyitems(items):
    """`assets` marks every test that reads ../shared/assets, through the fixture or the session pipeline.
    Under `--dist loadgroup` a file's tests share a worker (its module fixtures are built once), and so do all
    the tests of one shared session build."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if {"assets", "cats_dogs_pipeline", "oxford_head"} & fixtures:
            item.add_marker(pytest.mark.assets)
        shared = [group for name, group in SHARED_BUILDS.items() if name in fixtures]
        item.add_marker(pytest.mark.xdist_group(shared[0] if shared else item.nodeid.split("::")[0]))


@pytest.fixture
def prefect_server(tmp_path):
    """A real `prefect server start` on a free loopback port; yields the environment that talks to it."""
    import signal
    import sys
    import time
    import urllib.request

    from transferlab.workspace import tool_env

    port = closed_port()
    api = f"http://127.0.0.1:{port}/api"
    env = tool_env({"PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    "PREFECT_API_URL": api})
    process = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        while True:  # a server that never answers is failed by the tests' pytest timeout, not by a clock here
            try:
                urllib.request.urlopen(f"{api}/health", timeout=2).read()
                break
            except OSError:
                assert process.poll() is None, "the Prefect server stopped before it answered"
                time.sleep(1)
        yield env
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def registered_deployment(name: str, serving: subprocess.Popen):
    """The deployment `flow/deployment` once the `serving` process has registered it (with the current API
    settings); fails at once if that process stops first (one that hangs: the tests' pytest timeout)."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    while True:
        with get_client(sync_client=True) as client:
            try:
                return client.read_deployment_by_name(name)
            except ObjectNotFound:  # not registered yet: the served process is still starting
                assert serving.poll() is None, f"the process serving {name} stopped before registering it"
                time.sleep(2)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


STAGES = ("download", "preprocess", "extract_features", "train_head", "fine_tune", "evaluate")
HEAD_STAGES = STAGES[:4]


def run_stages(tmp_path: Path, overrides: dict, stages=STAGES[:2], track: bool = False) -> Path:
    """Run stages in-process, in order, on a copy of params.yaml with overrides; returns the params file."""
    import importlib
    import shutil

    from transferlab.stage_runner import run_stage
    from transferlab.workspace import set_params

    tmp_path.mkdir(parents=True, exist_ok=True)
    params_file = tmp_path / "params.yaml"
    if not params_file.exists():
        shutil.copy(PROJECT_ROOT / "params.yaml", params_file)
    set_params(params_file, overrides)
    for stage in stages:
        body = importlib.import_module(f"stages.{stage}").run
        argv = ["--params", str(params_file)] + ([] if track else ["--no-track"])
        code = run_stage(stage, body, ["data"], argv)
        assert code == 0, f"{stage} exited {code}"
    return params_file


def prepare_with(tmp_path: Path, overrides: dict) -> Path:
    """Run download + preprocess; return the prepared dir."""
    run_stages(tmp_path, overrides)
    return tmp_path / "data" / "prepared"


MOBILENET_V2 = "weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


# params.yaml's defaults, but for the offline and size settings of SMOKE_PARAMS and a second compared backbone
# (the transfer check and `dvc metrics show` across backbones need two); test_pipeline_e2e.py checks that it is so.
BUILT_PARAMS = {**SMOKE_PARAMS, "compare.backbones": ["resnet50", "vgg16"]}


def _run_folder(tmp_path_factory) -> Path:
    """The folder of this pytest run: under xdist, the one its workers share (each has a basetemp inside it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def built_workspace(tmp_path_factory):
    """One project copy with the whole pipeline run once by `transferlab repro` (synthetic data, two compared
    backbones, the project's default MLflow backend), built once per run whichever xdist worker asks first: the
    others wait on the lock. Tests only read it; tests that change it copy it."""
    from filelock import FileLock

    from transferlab.workspace import create_workspace, run_tool

    shared = _run_folder(tmp_path_factory)
    record = shared / "built_workspace.json"
    env = {"MLFLOW_TRACKING_URI": ""}  # the project default: sqlite:///mlflow.db in the workspace
    with FileLock(shared / "built_workspace.lock"):
        if not record.exists():
            path = create_workspace(shared / "built" / "ws", BUILT_PARAMS)
            repro = run_tool(path, "python", "-m", "transferlab", "repro", env=env)  # what `make run` runs
            record.write_text(json.dumps({"path": str(path), "args": repro.args, "stdout": repro.stdout,
                                          "stderr": repro.stderr}), encoding="utf-8")
    saved = json.loads(record.read_text(encoding="utf-8"))
    repro = subprocess.CompletedProcess(saved["args"], 0, saved["stdout"], saved["stderr"])
    return Path(saved["path"]), repro, env


def _private_copy_ignores(source: Path):
    """What a copy leaves behind: the MLflow runs, and DVC's own scratch (locks another process may hold)."""
    import shutil

    def ignored(folder: str, names: list[str]) -> set[str]:
        skipped = set(shutil.ignore_patterns("mlflow.db", "mlartifacts")(folder, names))
        return skipped | ({"tmp"} & set(names) if Path(folder) == source / ".dvc" else set())
    return ignored


@pytest.fixture
def workspace_copy(built_workspace, tmp_path):
    """A private copy of the built workspace (git, DVC cache and outputs; no MLflow runs), for tests that
    change params, run experiments or add stages' runs."""
    import shutil

    source, _, env = built_workspace
    copy = tmp_path / "ws"
    shutil.copytree(source, copy, symlinks=True, ignore=_private_copy_ignores(source))
    return copy, env


@pytest.fixture(scope="session")
def cats_dogs_pipeline(tmp_path_factory, assets) -> Path:
    """The whole pipeline, once per session, on the real Kaggle photos with real MobileNetV2 weights."""
    root = tmp_path_factory.mktemp("cats_dogs")
    run_stages(root, {"data.source": "folder", "data.folder.root": str(assets / "images" / "cats_vs_dogs"),
                      "data.image_size": 224, "backbone.name": "mobilenet_v2", "backbone.alpha": 1.0,
                      "backbone.weights": str(assets / MOBILENET_V2),
                      "fine_tune.epochs": 1}, STAGES)  # a size knob: 5 epochs here cost 60 s of the suite
    return root


# The fine-tuning tests' weak head: 3 epochs, dropout, no L2 leave room for one epoch of fine-tuning to beat it,
# which they need to see the trained weights; with head.l2: probe on these random features the probe chooses an
# L2 that zeroes the head's kernel, and no gradient would reach the backbone at all.
WEAK_HEAD = {"data.source": "synthetic", "data.synthetic.images_per_class": 8, "data.image_size": 32,
             "backbone.name": "resnet50", "compare.backbones": ["resnet50"], "backbone.weights": "none",
             "head.epochs": 3, "head.l2": 0.0, "head.dropout": 0.2,
             "fine_tune.epochs": 1}  # a size knob: the stage's own run only has to save a model


@pytest.fixture(scope="session")
def trained_head(tmp_path_factory):
    """A weak head and the fine_tune stage's outputs on tiny synthetic data, built once on the worker that runs
    every test using it (tests/test_finetune.py, tests/test_adversarial_training.py); tests only read it."""
    from transferlab.core.params_loader import load_params

    root = tmp_path_factory.mktemp("finetune")
    params_file = run_stages(root, WEAK_HEAD, STAGES[:5])
    return root, load_params(params_file)


@pytest.fixture(scope="session")
def oxford_head(tmp_path_factory, assets) -> Path:
    """The pipeline up to the heads, once per session, on the 600 Oxford-IIIT Pet photos with real MobileNetV2
    weights: its features are also the 600 photos as the pipeline embeds them (tests/test_quality_assets.py)."""
    root = tmp_path_factory.mktemp("oxford")
    run_stages(root, {"data.source": "folder", "data.folder.root": str(assets / "images" / "oxford_pets_3breeds"),
                      "data.image_size": 224, "backbone.weights": str(assets / MOBILENET_V2)}, HEAD_STAGES)
    return root


def experiments(shown: list[dict]) -> list[dict]:
    """The experiments in `dvc exp show --json` (DVC 3: a list of baselines, each with its experiments' revs)."""
    return [rev for baseline in shown for experiment in baseline.get("experiments") or []
            for rev in experiment.get("revs") or []]


def params_of(entry: dict) -> dict:
    """params.yaml as an entry of `dvc exp show --json` recorded it."""
    return entry["data"]["params"]["params.yaml"]["data"]


def metrics_of(entry: dict, path: str) -> dict:
    return entry["data"]["metrics"][path]["data"]


# Prepended to a script run in a fresh interpreter: any import of transferlab fails, so what the script loads
# provably needs none of it (the editable install would otherwise import it silently).
WITHOUT_TRANSFERLAB = """
import sys
class _NoTransferlab:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "transferlab":
            raise ImportError(f"{name}: this process must not import transferlab")
sys.meta_path.insert(0, _NoTransferlab())
"""


def run_without_transferlab(script: str, cwd: Path, env: dict | None = None) -> str:
    """Run `script` in a fresh Python that cannot import transferlab; its stdout (it must exit 0 and end by
    printing `MODULES:` and the list of transferlab's modules in sys.modules, which must be empty)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", WITHOUT_TRANSFERLAB + script], cwd=cwd, capture_output=True,
                            text=True, timeout=600, env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.rstrip().endswith("MODULES: []"), "the script must end by printing the transferlab modules"
    return result.stdout


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_loopback_cluster(commands: list[list[str]], addresses: list[str] | None = None) -> list[subprocess.Popen]:
    """Start one command per worker of a TF_CONFIG cluster on 127.0.0.1 (worker i runs commands[i])."""
    addresses = addresses or [f"127.0.0.1:{port}" for port in _free_ports(len(commands))]
    processes = []
    for index, command in enumerate(commands):
        config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen(command, cwd=PROJECT_ROOT, env={**os.environ, "TF_CONFIG": json.dumps(config)},
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return processes


def run_loopback_cluster(commands: list[list[str]]) -> list[str]:
    """Run one command per worker of a loopback cluster to the end; returns each worker's output."""
    processes = start_loopback_cluster(commands)
    try:
        logs = [process.communicate(timeout=300)[0] for process in processes]
    finally:
        for process in processes:
            process.kill()
    for process, log in zip(processes, logs):
        assert process.returncode == 0, log[-3000:]
    return logs
