"""The release loop on a real Prefect server and MLflow's own model server: the evaluate stage's promotion emits
the event, the served deployment's trigger starts the release flow, which serves the champion, checks it against
evaluate's answers, tags it and notifies a webhook block; a broken champion is rolled back and its run Failed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tests.conftest import PROJECT_ROOT, closed_port, registered_deployment
from transferlab.workspace import run_tool

pytestmark = pytest.mark.slow
DEPLOYMENT = "transferlab-release/release-on-promotion"


@pytest.fixture
def webhook():
    """A local endpoint for the notification block: the bodies it was sent."""
    received: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(self.rfile.read(int(self.headers["Content-Length"])).decode())
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            return None

    server = HTTPServer(("127.0.0.1", closed_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/", received
    server.shutdown()


def _finished_runs(deployment_id, count: int, serving: subprocess.Popen) -> list:
    """The deployment's first `count` runs once they are final; fails at once if the `serving` process stops first
    (a run that never ends: the tests' pytest timeout)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                                         sort=FlowRunSort.START_TIME_ASC)
        finished = [run for run in runs if run.state and run.state.is_final()]
        if len(finished) >= count:
            return finished
        assert serving.poll() is None, f"the release deployment stopped; {len(finished)} of {count} runs ended: {runs}"
        time.sleep(2)


def _broken_champion(workspace, monkeypatch) -> str:
    """The fine-tuned model registered again with an image decoder that fails on every image, gated to champion
    (its claimed accuracy beats the first); the event the evaluate stage would send, sent."""
    import mlflow

    from transferlab.core.params_loader import load_params
    from transferlab.data import images
    from transferlab.serving.export import log_image_model
    from transferlab.serving.release_events import announce_champion
    from transferlab.tracking.promotion import GateRules, register_and_gate
    from transferlab.tracking.runs import stage_run

    broken = workspace / "broken_decoder.py"
    broken.write_text(open(images.__file__, encoding="utf-8").read() + "\n\ndef model_pixels(*args, **kwargs):\n"
                      "    raise ValueError('this decoder is broken on purpose')\n", encoding="utf-8")
    monkeypatch.setattr(images, "__file__", str(broken))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workspace / 'mlflow.db'}")
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    params = load_params(workspace / "params.yaml")
    classes = [entry["name"] for entry in json.loads((workspace / "data/prepared/classes.json").read_text())]
    with stage_run("evaluate", params.mlflow.experiment, workspace, {}) as tracker:
        uri = log_image_model(tracker, workspace / params.paths.fine_tuned_model, classes, params.data.resize, 3)
        version, decision = register_and_gate(uri, params.evaluate.registered_model, 1.0,
                                              GateRules.of(params.evaluate), {"classes": json.dumps(classes)})
    assert (version, decision.alias, decision.previous) == ("2", "champion", "1"), decision
    assert announce_champion(params.evaluate.registered_model, version, decision.previous)
    return version


def test_a_promotion_is_released_and_a_broken_champion_is_rolled_back(prefect_server, workspace_copy, webhook,
                                                                      monkeypatch):
    import mlflow
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.settings import PREFECT_API_URL, temporary_settings

    workspace, env = workspace_copy  # no MLflow runs: the forced evaluate registers version 1, the first champion
    url, received = webhook
    env = {**prefect_server, **env}
    with temporary_settings({PREFECT_API_URL: prefect_server["PREFECT_API_URL"]}):
        CustomWebhookNotificationBlock(name="release", url=url, json_data={"text": "{{body}}"}).save("team")
        serve = subprocess.Popen([sys.executable, "-m", "flows.release", "serve", "--workspace", str(workspace),
                                  "--notify-block", "custom-webhook/team"], cwd=PROJECT_ROOT, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deployment = registered_deployment(DEPLOYMENT, serve)
            run_tool(workspace, "dvc", "repro", "--force", "--single-item", "evaluate", env=env)
            [first] = _finished_runs(deployment.id, 1, serve)
            assert first.state.is_completed(), first.state
            client = mlflow.MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
            tags = client.get_model_version("transferlab", "1").tags
            assert tags["release.status"] == "passed" and float(tags["release.latency_p95_ms"]) > 0
            print("served vs evaluate's probabilities, largest difference:", tags["release.max_probability_difference"])
            assert float(tags["release.max_probability_difference"]) <= 0.01
            assert tags["release.summary"].startswith("transferlab version 1 released: p50 ")
            broken = _broken_champion(workspace, monkeypatch)
            second = _finished_runs(deployment.id, 2, serve)[1]
            while len(received) < 2:  # the hook notifies after the run's final state is set
                assert serve.poll() is None, f"the release deployment stopped with {len(received)} of 2 notifications"
                time.sleep(1)
        finally:
            os.killpg(serve.pid, signal.SIGTERM)
            serve.wait(timeout=60)
    assert second.state.is_failed(), second.state
    assert second.parameters["version"] == broken
    assert str(client.get_model_version_by_alias("transferlab", "champion").version) == "1"
    tags = client.get_model_version("transferlab", broken).tags
    assert tags["release.status"] == "rolled_back" and "broken on purpose" in tags["release.reason"], tags
    assert tags["gate.alias"] == "rolled_back"
    notes = [json.loads(body)["text"] for body in received]
    assert notes[0].startswith("transferlab version 1 released") and len(notes) == 2
    assert notes[1].startswith(f"transferlab version {broken} rolled back (champion: 1): ")
