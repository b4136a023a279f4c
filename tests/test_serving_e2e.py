"""The champion outside the project: `transferlab serve` starts MLflow's own server on a free loopback port,
a real photo posted as base64 comes back as a class and probabilities, and `mlflow.pyfunc.load_model` in a
process that cannot import transferlab gives the same answer as the fine-tuned model file DVC tracks."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from tests.conftest import closed_port, run_without_transferlab
from tests.process_trees import marked, survivors
from transferlab.workspace import tool_env

pytestmark = pytest.mark.slow
PHOTO = "images/samples/darknet_dog.jpg"


def _wait_for(url: str, server: subprocess.Popen, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stdout.read()[-3000:]
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"{url}: no answer within {timeout_s} s")


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def _expected(workspace, photo: bytes) -> np.ndarray:
    """The fine-tuned model's own probabilities for the photo, decoded as preprocess decodes."""
    from transferlab.data.images import model_pixels
    from transferlab.modeling.assembly import load_keras

    model = load_keras(workspace / "models" / "fine_tuned" / "model.keras")
    return model.predict(model_pixels(photo, 32)[None].astype(np.float32), verbose=0)[0]


def _serve(workspace, env: dict, port: int) -> subprocess.Popen:
    """`transferlab serve` as a background job of a script starts it: SIGINT ignored (issue 42: it exited 0 without
    its stopped line); it must stop on Ctrl-C anyway."""
    return subprocess.Popen([sys.executable, "-m", "transferlab", "serve", "--port", str(port)], cwd=workspace,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))


def test_mlflow_serves_the_champion_to_a_posted_photo(built_workspace, assets):
    path, _, env = built_workspace
    photo = (assets / PHOTO).read_bytes()
    port, env = closed_port(), marked(tool_env(env))
    server = _serve(path, env, port)
    try:
        _wait_for(f"http://127.0.0.1:{port}/ping", server)
        body = {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(photo).decode()]]},
                "params": {"top_k": 3}}
        [answer] = _post(f"http://127.0.0.1:{port}/invocations", body)["predictions"]
    finally:
        os.killpg(server.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole process group
        output, _ = server.communicate(timeout=60)
    # issue 32: Ctrl-C stops the server with one line of ours, not a traceback
    assert server.returncode == 130 and "transferlab serve: stopped" in output and "Traceback" not in output, output
    assert "absl::InitializeLog" not in output and "cuInit" not in output, output  # the served model's TF start-up
    assert survivors(env) == []  # MLflow's CLI and the uvicorn it runs
    classes = ["class_0", "class_1", "class_2"]
    assert answer["error"] is None and sorted(answer["top_classes"]) == classes
    assert abs(sum(answer["top_probabilities"]) - 1) < 1e-5 and answer["class"] == answer["top_classes"][0]
    expected = _expected(path, photo)
    by_class = dict(zip(answer["top_classes"], answer["top_probabilities"]))
    np.testing.assert_allclose([by_class[name] for name in classes], expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_serve_that_is_killed_leaves_no_model_server_answering(built_workspace, sent):
    """Issue 42: SIGTERM to `transferlab serve` (kill, a supervisor) left MLflow's scoring server running and
    answering; a SIGKILL, too."""
    path, _, env = built_workspace
    port, env = closed_port(), marked(tool_env(env))
    server = _serve(path, env, port)
    try:
        _wait_for(f"http://127.0.0.1:{port}/ping", server)
    finally:
        server.send_signal(sent)  # to the command alone: its server must not need the signal too
        output, _ = server.communicate(timeout=60)
    if sent == signal.SIGTERM:
        assert server.returncode == 130 and output.endswith("transferlab serve: stopped\n"), output[-3000:]
        assert "Traceback" not in output, output
    assert survivors(env) == []


def test_pyfunc_loads_the_champion_where_transferlab_cannot_be_imported(built_workspace, assets):
    path, _, _ = built_workspace
    photo = assets / PHOTO
    script = f"""
import json, mlflow, pandas as pd
model = mlflow.pyfunc.load_model("models:/transferlab@champion")
answer = model.predict(pd.DataFrame({{"image": [open({str(photo)!r}, "rb").read()]}}), params={{"top_k": 3}})
print(json.dumps(answer.to_dict("records")))
print("MODULES:", sorted(name for name in sys.modules if name.split(".")[0] == "transferlab"))
"""
    output = run_without_transferlab(script, path, {"MLFLOW_TRACKING_URI": f"sqlite:///{path / 'mlflow.db'}"})
    [answer] = json.loads(output.split("MODULES:")[0].strip().splitlines()[-1])
    by_class = dict(zip(answer["top_classes"], answer["top_probabilities"]))
    np.testing.assert_allclose([by_class[f"class_{i}"] for i in range(3)], _expected(path, photo.read_bytes()),
                               rtol=1e-5, atol=1e-7)
