"""One pipeline execution, one params.yaml (issue 14, finding 10)."""

from __future__ import annotations

import pytest

from transferlab.core.errors import ParamsError
from transferlab.params_snapshot import check_unchanged


def test_a_later_stage_of_the_same_run_refuses_a_changed_params_file(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("head: {epochs: 5}\n")
    snapshots = tmp_path / "scratch" / "pipelines"
    check_unchanged(params, snapshots, "dvc-100-1")  # the run's first stage records the file
    check_unchanged(params, snapshots, "dvc-100-1")  # unchanged: fine
    params.write_text("head: {epochs: 7}\n")  # `dvc exp run -S head.epochs=7`, refused as busy, wrote it anyway
    with pytest.raises(ParamsError, match="changed while this pipeline run was going on"):
        check_unchanged(params, snapshots, "dvc-100-1")
    check_unchanged(params, snapshots, "dvc-200-1")  # the next run starts from the file as it is


def test_the_stage_runner_refuses_a_params_file_changed_within_its_pipeline_run(tmp_path, monkeypatch, capsys):
    from transferlab.stage_runner import run_stage

    params = tmp_path / "params.yaml"
    params.write_text("head: {epochs: 5}\n")
    monkeypatch.setenv("TRANSFERLAB_PIPELINE_ID", "prefect-1234")  # what a flow (or a dvc process) gives its stages
    ran = []
    argv = ["--params", str(params), "--no-track"]
    assert run_stage("download", ran.append, [], argv) == 0
    params.write_text("head: {epochs: 7}\n")
    assert run_stage("preprocess", ran.append, [], argv) == 2 and len(ran) == 1
    assert "params.yaml: changed while this pipeline run was going on" in capsys.readouterr().err
    assert (tmp_path / ".cache" / "transferlab" / "pipelines" / "prefect-1234.sha256").is_file()
