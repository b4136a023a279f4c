"""Lineage tags: a registered version names the commit, params and data that made it, and those names lead to
the data in the DVC cache (`dvc checkout`/`dvc pull` of that commit brings back exactly those files)."""

from __future__ import annotations

import hashlib
import json
import logging

import mlflow
import pytest
import yaml

from transferlab.core.digest import file_sha256
from transferlab.tracking.lineage import locked_outputs, verified_md5
from transferlab.tracking.lineage import git_commit
from transferlab.workspace import run_tool


def test_pipeline_outputs_do_not_make_the_tree_dirty_but_an_edit_does(tmp_path):
    for name in ("params.yaml", "dvc.lock", "metrics/summary.json", "data/.gitignore"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("a: 1\n")
    run_tool(tmp_path, "git", "init", "-q")
    run_tool(tmp_path, "git", "add", "-A")
    run_tool(tmp_path, "git", "commit", "-q", "-m", "start")
    for name in ("dvc.lock", "metrics/summary.json", "data/.gitignore"):
        (tmp_path / name).write_text("a: 2\n")
    generated = ["dvc.lock", "**/.gitignore", "metrics"]
    assert git_commit(tmp_path, generated)["git.dirty"] == "false"
    assert git_commit(tmp_path)["git.dirty"] == "true"
    (tmp_path / "params.yaml").write_text("a: 3\n")
    assert git_commit(tmp_path, generated)["git.dirty"] == "true"


def _locked_folder(tmp_path) -> dict:
    """data/prepared added by DVC itself, and a dvc.lock recording DVC's entry for it: md5, size, nfiles."""
    folder = tmp_path / "data" / "prepared"
    (folder / "shards").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"12345")
    (folder / "shards" / "b.bin").write_bytes(b"\r\nbytes")
    run_tool(tmp_path, "git", "init", "-q")
    run_tool(tmp_path, "dvc", "init", "-q")
    run_tool(tmp_path, "dvc", "add", "-q", "data/prepared")
    [entry] = yaml.safe_load((tmp_path / "data" / "prepared.dvc").read_text())["outs"]
    entry["path"] = "data/prepared"  # relative to the .dvc file there, to the project in dvc.lock
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"preprocess": {"outs": [entry]}}}))
    return entry


def test_a_lock_that_no_longer_describes_the_folder_names_no_data(tmp_path, caplog):
    entry = _locked_folder(tmp_path)
    outputs = locked_outputs(tmp_path)
    assert verified_md5(tmp_path, "data/prepared", outputs) == entry["md5"]
    (tmp_path / "data" / "prepared" / "c.bin").write_bytes(b"6")  # written outside dvc repro
    with caplog.at_level(logging.WARNING, "transferlab.lineage"):
        assert verified_md5(tmp_path, "data/prepared", outputs) is None
        assert verified_md5(tmp_path, "data/features/x", outputs) is None
    assert "differs from what dvc.lock records" in caplog.text and "records no output data/features/x" in caplog.text


def test_a_hand_edited_md5_in_dvc_lock_is_not_copied_into_the_versions_tags(tmp_path, caplog):
    """Issue 42: the md5 was copied without a check against the files; the same count and size passed."""
    from transferlab.tracking.lineage import lineage_tags
    from transferlab.tracking.tracker import Tracker

    entry = _locked_folder(tmp_path)
    (tmp_path / "params.yaml").write_text("base: {seed: 1}\n")
    lock = yaml.safe_load((tmp_path / "dvc.lock").read_text())
    edited = hashlib.md5(b"some other data").hexdigest() + ".dir"
    lock["stages"]["preprocess"]["outs"][0]["md5"] = edited
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    with caplog.at_level(logging.WARNING, "transferlab.lineage"):
        tags = lineage_tags(Tracker(), tmp_path, tmp_path / "params.yaml", {"data.prepared.md5": "data/prepared"})
    assert "data.prepared.md5" not in tags and tags["params.sha256"] == file_sha256(tmp_path / "params.yaml")
    [line] = [record.getMessage() for record in caplog.records]
    assert line.startswith(f"lineage: data/prepared hashes to {entry['md5']}, dvc.lock records {edited} ")


def _champion(path):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{path / 'mlflow.db'}")
    return client, client.get_model_version_by_alias("transferlab", "champion")


def _cached_files(path, md5: str) -> dict[str, str]:
    """relpath -> md5 of a DVC folder output, read from the cache by its .dir md5 alone."""
    listing = path / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    entries = json.loads(listing.read_text())
    for entry in entries:
        assert (path / ".dvc" / "cache" / "files" / "md5" / entry["md5"][:2] / entry["md5"][2:]).is_file()
    return {entry["relpath"]: entry["md5"] for entry in entries}


@pytest.mark.slow
def test_the_champions_tags_find_its_code_params_and_data(built_workspace):
    path, _, _ = built_workspace
    client, version = _champion(path)
    tags = version.tags
    assert tags["git.commit"] == run_tool(path, "git", "rev-parse", "HEAD").stdout.strip()
    assert tags["git.dirty"] == "false"  # dvc.lock, metrics and DVC's .gitignore entries changed: not edits
    assert tags["params.sha256"] == file_sha256(path / "params.yaml")
    lock = locked_outputs(path)
    for tag, folder in (("data.prepared.md5", "data/prepared"), ("data.features.md5", "data/features/resnet50")):
        assert tags[tag] == lock[folder]["md5"]
        cached = _cached_files(path, tags[tag])
        on_disk = {file.relative_to(path / folder).as_posix(): hashlib.md5(file.read_bytes()).hexdigest()
                   for file in (path / folder).rglob("*") if file.is_file()}
        assert cached == on_disk  # the tag alone names these exact bytes
    evaluate = client.get_run(version.run_id)
    assert tags["pipeline.run_id"] == evaluate.data.tags["mlflow.parentRunId"]
    assert evaluate.data.tags["data.prepared.md5"] == tags["data.prepared.md5"]  # the run carries them too
    assert "dvc.experiment" not in tags


@pytest.mark.slow
def test_a_dvc_experiment_is_named_on_the_version_it_registers(workspace_copy):
    """`transferlab exp run` (issue 32): one pipeline run named after the experiment, carrying every stage."""
    path, env = workspace_copy
    result = run_tool(path, "python", "-m", "transferlab", "exp", "run", "-n", "gallery-4", "-S",
                      "evaluate.gallery_size=4", "evaluate", env=env)
    assert "Ran experiment(s): gallery-4" in result.stdout and "registry: " in result.stdout
    client, version = _champion(path)
    assert version.tags["dvc.experiment"] == "gallery-4"
    pipeline = client.get_run(version.tags["pipeline.run_id"])
    assert pipeline.data.tags["dvc.experiment"] == "gallery-4"
    stages = client.search_runs([pipeline.info.experiment_id],
                                f"tags.mlflow.parentRunId = '{pipeline.info.run_id}'")
    restored = {run.data.tags["transferlab.stage"]: run.data.tags.get("transferlab.restored") for run in stages}
    assert restored["evaluate"] is None and restored["train_head@resnet50"] == restored["preprocess"] == "true"
    assert version.tags["git.dirty"] == "true"  # params.yaml differs from the commit: the hash says how
    assert version.tags["params.sha256"] == file_sha256(path / "params.yaml")


def test_runs_record_the_git_commit_and_whether_the_tree_was_clean(tmp_path):
    import subprocess

    from transferlab.workspace import tool_env

    assert git_commit(tmp_path) == {}  # not a repository: no tag rather than an error
    (tmp_path / "code.py").write_text("x = 1\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "code"]):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, env=tool_env())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert git_commit(tmp_path) == {"mlflow.source.git.commit": head, "git.dirty": "false"}
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path)["git.dirty"] == "true"
