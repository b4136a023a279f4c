"""A real `prefect server start` on a free loopback port: register the scheduled deployment, read its schedule
back through the API, trigger a run and watch the served process complete it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import PROJECT_ROOT
from transferlab.workspace import tool_env

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(url)


@pytest.fixture
def server(tmp_path):
    port = _free_port()
    env = tool_env({"PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"})
    process = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        _wait(f"http://127.0.0.1:{port}/api/health", 180)
        yield env
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def test_scheduled_deployment_is_served_and_runs(server, workspace_copy):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    workspace, _ = workspace_copy  # built: the served run reports every stage cached
    serve = subprocess.Popen([sys.executable, "-m", "flows.serve", "--workspace", str(workspace),
                              "--cron", "30 4 * * 1", "--timezone", "Europe/Berlin"],
                             cwd=PROJECT_ROOT, env=server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        with temporary_settings({PREFECT_API_URL: server["PREFECT_API_URL"]}):
            deployment = None
            deadline = time.monotonic() + 120
            while deployment is None and time.monotonic() < deadline:
                with get_client(sync_client=True) as client:
                    try:
                        deployment = client.read_deployment_by_name("transferlab-pipeline/weekly-retrain")
                    except ObjectNotFound:  # not registered yet: the served process is still starting
                        time.sleep(2)
            assert deployment is not None, "the deployment was never registered"
            schedule = deployment.schedules[0].schedule
            assert (schedule.cron, schedule.timezone) == ("30 4 * * 1", "Europe/Berlin")
            run = run_deployment("transferlab-pipeline/weekly-retrain", timeout=900)
            assert run.state.is_completed(), run.state
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(timeout=60)
