"""Where a registered model came from, as tags that lead back to each input: the code (git commit, and
whether the tree had edits), the params file, the data and features (their md5 in dvc.lock, which names them
in the DVC cache), the pipeline run and the DVC experiment."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from transferlab.core.digest import file_sha256
from transferlab.tracking.tracker import Tracker

log = logging.getLogger("transferlab.lineage")
LOCK_FILE = "dvc.lock"
GIT_COMMIT_TAG = "mlflow.source.git.commit"
DVC_BOOKKEEPING = ("dvc.lock", "**/.gitignore")  # rewritten by every `dvc repro` (DVC lists its outputs in .gitignore)


def git_commit(project_root: Path, generated: Sequence[str] = ()) -> dict[str, str]:
    """The commit the code came from, and whether the tree had changes (then the commit alone does not say).

    Changes to DVC's bookkeeping and to `generated` (glob patterns of tracked outputs the pipeline rewrites:
    metrics, plots) are not edits to the code or params, so they do not make the tree dirty."""
    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=project_root, capture_output=True, text=True, timeout=10)
        return result.stdout.strip() if result.returncode == 0 else ""

    try:
        commit = git("rev-parse", "HEAD")
        excluded = [f":(exclude,glob){pattern}" for pattern in (*DVC_BOOKKEEPING, *generated)]
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", *excluded)) if commit else False
    except (OSError, subprocess.TimeoutExpired):  # no git on this machine: the run simply has no commit tag
        return {}
    return {GIT_COMMIT_TAG: commit, "git.dirty": str(dirty).lower()} if commit else {}


def lineage_tags(tracker: Tracker, root: Path, params_file: Path, data: Mapping[str, str]) -> dict[str, str]:
    """Tags for the tracked stage's model. `data`: tag name -> a DVC output folder (relative to `root`) whose
    dvc.lock md5 the tag records. The commit is the one the stage's run recorded when it started."""
    code = tracker.code
    tags = {"git.commit": code.get(GIT_COMMIT_TAG, "unknown (not a git checkout)"),
            "git.dirty": code.get("git.dirty", "unknown"), "params.sha256": file_sha256(params_file)}
    outputs = locked_outputs(root)
    for name, relative in data.items():
        if (md5 := verified_md5(root, relative, outputs)) is not None:
            tags[name] = md5
    if parent := tracker.pipeline_run:
        tags["pipeline.run_id"] = parent
    if os.environ.get("DVC_EXP_NAME"):  # set by `dvc exp run`
        tags["dvc.experiment"] = os.environ["DVC_EXP_NAME"]
    return tags


def locked_stages(root: Path) -> dict[str, dict]:
    """dvc.lock's entry of each stage, by the name DVC gives it (`train_head@resnet50`); {} without a dvc.lock."""
    lock = root / LOCK_FILE
    if not lock.is_file():
        return {}
    return (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})


def locked_outputs(root: Path) -> dict[str, dict]:
    """Every output dvc.lock records, by path: its md5 (`<hash>.dir` for a folder), size and file count."""
    stages = locked_stages(root)
    return {out["path"]: out for stage in stages.values() for out in stage.get("outs", []) if "md5" in out}


def verified_md5(root: Path, relative: str, outputs: Mapping[str, dict]) -> str | None:
    """The output's md5 from dvc.lock, if it is DVC's hash of the folder on disk now. A count and size that
    differ say so at once; else the files are hashed as DVC hashes them (dvc_data: the `.dir` md5 of their
    listing). DVC's own `dvc status` would need the repo lock, which `dvc repro` holds while a stage runs."""
    entry = outputs.get(relative.rstrip("/"))
    folder = root / relative
    if entry is None or not folder.is_dir():
        log.warning("lineage: dvc.lock records no output %s; the model's tags will not name its data "
                    "(run the pipeline with `dvc repro`)", relative)
        return None
    files = [path for path in folder.rglob("*") if path.is_file()]
    if (len(files), sum(path.stat().st_size for path in files)) != (entry.get("nfiles"), entry.get("size")):
        log.warning("lineage: %s differs from what dvc.lock records for it (changed since, or written outside "
                    "`dvc repro`); the model's tags will not name its data", relative)
        return None
    if entry.get("hash") != "md5":  # DVC 2's md5-dos2unix: this project's DVC 3 writes none
        log.warning("lineage: dvc.lock records %s with DVC 2's hash; the model's tags will not name its data "
                    "(run `dvc repro` with DVC 3)", relative)
        return None
    if (found := dvc_md5(folder)) != entry["md5"]:
        log.warning("lineage: %s hashes to %s, dvc.lock records %s (dvc.lock edited, or the files changed "
                    "outside `dvc repro`); the model's tags will not name its data", relative, found, entry["md5"])
        return None
    return str(entry["md5"])


def dvc_md5(folder: Path) -> str:
    """DVC's md5 of a folder output, from its files: `<md5 of the listing of each file's md5>.dir`."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem
    from dvc_objects.fs.memory import MemoryFileSystem

    staging = HashFileDB(MemoryFileSystem(), "memory://transferlab-lineage")  # dry run: nothing is stored
    _, _, tree = build(staging, str(folder), LocalFileSystem(), "md5", dry_run=True)
    return str(tree.hash_info.value)
