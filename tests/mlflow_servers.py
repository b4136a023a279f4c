"""A real MLflow tracking server on a free loopback port, for the tests that need one, and its end."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from tests.conftest import closed_port


# MLflow 3's server starts a job runner and seven huey consumers by default; no test uses MLflow's jobs, and on a
# two-core machine they take the cores the test is measuring
NO_JOB_RUNNER = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def mlflow_server(folder: Path, app_name: str | None = None,
                  env: Mapping[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    """The server (its own process group) with its store in `folder`; returns (process, port) once it answers."""
    port = closed_port()
    app = ["--app-name", app_name] if app_name else []
    process = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                                "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
                                "--default-artifact-root", str(folder / "server-artifacts"), "--workers", "1", *app],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                               env={**os.environ, **NO_JOB_RUNNER, **(env or {})})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return process, port
        except OSError:
            time.sleep(0.5)
    kill_group(process)
    raise RuntimeError(f"mlflow server did not start (exit code {process.returncode})")


def kill_group(process: subprocess.Popen) -> None:
    """The server and its workers (uvicorn's children would go on serving)."""
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
