"""Prefect's server for the stack, on PostgreSQL, with a process work pool and one worker that runs its flows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from transferlab.core.errors import UserError
from transferlab.stack import postgres
from transferlab.stack.layout import HOST, StackLayout
from transferlab.stack.secrets import Credentials

SERVICE = "prefect"
WORKER = "prefect-worker"
WORK_POOL = "transferlab"


def prefect_binary() -> str:
    return str(Path(sys.executable).with_name("prefect"))


def api_url(layout: StackLayout) -> str:
    return f"{layout.url('prefect')}/api"


def server_command_and_env(layout: StackLayout, credentials: Credentials) -> tuple[list[str], dict[str, str]]:
    home = layout.data(SERVICE)
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_DATABASE_CONNECTION_URL": postgres.uri(layout, credentials, "prefect", "postgresql+asyncpg")}
    env.pop("PREFECT_API_URL", None)
    argv = [prefect_binary(), "server", "start", "--host", HOST, "--port", str(layout.ports.prefect)]
    return argv, env


def client_env(layout: StackLayout) -> dict[str, str]:
    return {"PREFECT_API_URL": api_url(layout), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def worker_command_and_env(layout: StackLayout, member_env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The pool's worker: it runs each flow run as a process, with the writer's environment (a team's service
    account: MLflow, the object store and Prefect)."""
    env = {**os.environ, **member_env, **client_env(layout), "PREFECT_HOME": str(layout.data(WORKER))}
    layout.data(WORKER).mkdir(parents=True, exist_ok=True)
    return [prefect_binary(), "worker", "start", "--pool", WORK_POOL, "--type", "process"], env


def create_work_pool(layout: StackLayout) -> None:
    env = {**os.environ, **client_env(layout), "PREFECT_HOME": str(layout.data(WORKER))}
    listed = subprocess.run([prefect_binary(), "work-pool", "inspect", WORK_POOL], env=env, capture_output=True,
                            text=True, timeout=120)
    if listed.returncode == 0:
        return
    made = subprocess.run([prefect_binary(), "work-pool", "create", WORK_POOL, "--type", "process"], env=env,
                          capture_output=True, text=True, timeout=120)
    if made.returncode != 0:
        said = (made.stderr or made.stdout).strip().splitlines()
        raise UserError(f"Prefect's work pool {WORK_POOL} was not created ({said[-1][:200] if said else ''})")


def health(layout: StackLayout) -> str | None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{api_url(layout)}/health", timeout=5) as response:
            return None if response.status == 200 else f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))[:200]
