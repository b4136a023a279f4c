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


def test_a_stage_whose_params_change_while_it_runs_fails_before_dvc_records_them(tmp_path, capsys):
    """Issue 42: params.yaml edited while train_head ran; dvc.lock recorded `dropout: 0.5` beside a head trained with
    0.0, and `dvc status` said up to date. DVC writes dvc.lock only after the stage's process exits 0."""
    from tests.conftest import PROJECT_ROOT
    from transferlab.stage_runner import run_stage
    from transferlab.workspace import set_params

    params = tmp_path / "params.yaml"
    params.write_text((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    argv = ["--params", str(params), "--no-track"]
    seen = []

    def trained_while_edited(context):
        seen.append(context.params.head.dropout)
        set_params(params, {"head.dropout": 0.5})  # an editor, or a `dvc exp run -S` refused as busy

    assert run_stage("train_head", trained_while_edited, [], argv) == 2 and seen == [0.0]
    assert capsys.readouterr().err.strip().splitlines() == [
        "train_head: error: params.yaml: head.dropout: 0.0 -> 0.5 changed while train_head ran, whose outputs were "
        "made with the old values; train_head fails so that dvc.lock does not record the new ones beside them: run "
        "it again"]
    reformatted = params.read_text(encoding="utf-8") + "# a comment: the same values\n"
    assert run_stage("train_head", lambda context: params.write_text(reformatted, encoding="utf-8"), [], argv) == 0
