"""One `dvc repro` runs on one params.yaml: a stage refuses to run on a file changed since the run's first stage.

DVC's `exp run -S` writes params.yaml before it takes the repository lock, so one refused as "busy" while a
`dvc repro` runs has already changed the file, and the running repro's later stages would read the new
values and record them in dvc.lock beside outputs made with the old ones. The first stage of a pipeline
execution records the file's hash (per pipeline id: the `dvc` process, or the flow's run); every later stage
of the same execution compares.
"""

from __future__ import annotations

import time
from pathlib import Path

from transferlab.core.digest import file_sha256
from transferlab.core.errors import ParamsError

KEEP_DAYS = 7


def check_unchanged(params_file: Path, snapshots: Path, pipeline: str) -> None:
    """Record params.yaml's hash for `pipeline` on its first stage; refuse a later stage if the file changed."""
    snapshots.mkdir(parents=True, exist_ok=True)
    snapshot, current = snapshots / f"{pipeline}.sha256", file_sha256(params_file)
    try:
        with snapshot.open("x", encoding="utf-8") as handle:  # exclusive: parallel first stages agree on one
            handle.write(current)
        _forget_old(snapshots)
        return
    except FileExistsError:
        recorded = snapshot.read_text(encoding="utf-8").strip()
    if recorded and recorded != current:
        raise ParamsError(f"{params_file.name}: changed while this pipeline run was going on (a `dvc exp run -S` "
                          f"refused as busy still writes it, as does an editor); stopping so that outputs and "
                          f"dvc.lock do not mix two configurations: check `git diff {params_file.name}`, then run again")


def _forget_old(snapshots: Path) -> None:
    cutoff = time.time() - KEEP_DAYS * 86400
    for path in snapshots.glob("*.sha256"):
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
