"""`transferlab doctor` reports what works and, for each problem, the fix."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import PROJECT_ROOT, closed_port
from transferlab.doctor import diagnose, render
from transferlab.workspace import set_params


def _params(tmp_path, overrides):
    params = tmp_path / "params.yaml"
    params.write_text((PROJECT_ROOT / "params.yaml").read_text())
    set_params(params, overrides)
    return params


def test_a_healthy_synthetic_setup_has_no_problems(tmp_path):
    findings = {f.check: f for f in diagnose(_params(tmp_path, {"data.source": "synthetic", "backbone.weights": "none"}))}
    assert {"versions", "disk", "mlflow", "prefect", "params", "accelerators", "dataset", "weights mobilenet_v2"} <= set(findings)
    assert all(f.ok for f in findings.values()), render(list(findings.values()))
    assert "tensorflow 2.21" in findings["versions"].detail


def test_each_problem_comes_with_its_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://user:secret@127.0.0.1:{closed_port()}")
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{closed_port()}/api")
    params = _params(tmp_path, {"data.source": "folder", "data.folder.root": "no/such/folder",
                                "backbone.weights": "missing.h5", "compare.backbones": ["mobilenet_v2", "resnet50"],
                                "compare.weights": {"resnet50": "none"}})
    findings = {f.check: f for f in diagnose(params)}
    problems = {name for name, f in findings.items() if not f.ok}
    assert problems == {"mlflow", "prefect", "dataset", "weights mobilenet_v2"}, render(list(findings.values()))
    assert all(findings[name].fix for name in problems)
    assert findings["weights resnet50"].ok
    text = render(list(findings.values()))
    assert "secret" not in text and "***@127.0.0.1" in text  # credentials never printed


def test_bad_params_are_a_finding_not_a_crash(tmp_path):
    findings = {f.check: f for f in diagnose(_params(tmp_path, {"data.image_size": 5}))}
    assert not findings["params"].ok and "data.image_size" in findings["params"].detail


def test_cli_exits_1_on_problems_and_prints_json(tmp_path):
    params = _params(tmp_path, {"data.source": "folder", "data.folder.root": "nowhere"})
    result = subprocess.run([sys.executable, "-m", "transferlab", "doctor", "--params", str(params), "--json"],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    records = {r["check"]: r for r in json.loads(result.stdout)}
    assert records["dataset"]["ok"] is False and "nowhere" in records["dataset"]["detail"]
