"""Tracking: an unreachable MLflow server stops a stage in seconds, before any work, with one clear line."""

from __future__ import annotations

from tests.conftest import closed_port, run_stages
from transferlab.stage_runner import run_stage
from transferlab.tracking.mlflow_runs import environment_tags, tracking_home


def test_unreachable_mlflow_fails_fast_and_leaves_outputs_untouched(tmp_path, monkeypatch, capsys):
    params = run_stages(tmp_path, {"data.source": "synthetic", "data.synthetic.images_per_class": 4,
                                   "data.image_size": 32})
    manifest = tmp_path / "data" / "prepared" / "manifest.csv"
    before = manifest.stat().st_mtime_ns
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://user:pw@127.0.0.1:{closed_port()}")
    import requests

    from stages import preprocess

    requests_sent = []
    monkeypatch.setattr(requests.Session, "request", lambda *args, **kwargs: requests_sent.append(args) or 1 / 0)
    code = run_stage("preprocess", preprocess.run, ["data"], ["--params", str(params)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and requests_sent == []  # stopped by the probe: MLflow's retrying client never started
    assert err[-1].startswith("preprocess: error: MLFLOW_TRACKING_URI http://***@127.0.0.1:")
    assert "no MLflow server answers" in err[-1] and "pw" not in err[-1]
    assert manifest.stat().st_mtime_ns == before


def test_queued_experiments_track_into_the_repo_that_queued_them(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tracking_home(tmp_path) == tmp_path.resolve()
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo"))  # what DVC sets in a queued run's temporary copy
    assert tracking_home(tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpabc") == (tmp_path / "repo").resolve()
    monkeypatch.setenv("DVC_EXP_NAME", "raspy-wire")
    assert environment_tags()["dvc.experiment"] == "raspy-wire"
