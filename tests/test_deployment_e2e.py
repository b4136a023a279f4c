"""A real `prefect server start` on a free loopback port: register the scheduled deployment, read its schedule
back through the API, trigger a run and watch the served process complete it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

import pytest

from tests.conftest import PROJECT_ROOT, registered_deployment
from tests.process_trees import marked, survivors

pytestmark = pytest.mark.slow


def test_scheduled_deployment_is_served_and_runs(prefect_server, workspace_copy):
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    workspace, _ = workspace_copy  # built: the served run reports every stage cached
    log = tempfile.TemporaryFile("w+")  # not a pipe: the served run's log would fill it and block the process
    env = marked(prefect_server)
    # `make serve &` from a script: SIGINT inherited ignored (issue 42: Ctrl-C was then ignored for good)
    serve = subprocess.Popen([sys.executable, "-m", "flows.serve", "--workspace", str(workspace),
                              "--cron", "30 4 * * 1", "--timezone", "Europe/Berlin"],
                             cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log,
                             start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        with temporary_settings({PREFECT_API_URL: prefect_server["PREFECT_API_URL"]}):
            deployment = registered_deployment("transferlab-pipeline/weekly-retrain", serve)
            schedule = deployment.schedules[0].schedule
            assert (schedule.cron, schedule.timezone) == ("30 4 * * 1", "Europe/Berlin")
            run = run_deployment("transferlab-pipeline/weekly-retrain", timeout=900)
            assert run.state.is_completed(), run.state
    finally:
        os.killpg(serve.pid, signal.SIGINT)  # Ctrl-C on `make serve` reaches the whole process group
        serve.wait(timeout=60)
        log.seek(0)
        errors = log.read()
    # issue 32: one line, not ~20 lines of Prefect's and asyncio's tracebacks
    assert "Traceback" not in errors and "flows.serve: stopped serving weekly-retrain" in errors, errors[-3000:]
    assert survivors(env) == []
