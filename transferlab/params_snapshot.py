"""One `dvc repro` runs on one params.yaml: a stage refuses to run on a file changed since the run's first stage.

DVC's `exp run -S` writes params.yaml before it takes the repository lock, so one refused as "busy" while a
`dvc repro` runs has already changed the file, and the running repro's later stages would read the new
values and record them in dvc.lock beside outputs made with the old ones. The first stage of a pipeline
execution records the file's hash (per pipeline id: the `dvc` process, or the flow's run); every later stage
of the same execution compares. A stage also reads the file again when its work is done
(`check_same_values`): DVC records params.yaml in dvc.lock after the stage's process ends, so a change made while
it ran would be recorded beside outputs made with the values before it.
"""

from __future__ import annotations

import time
from pathlib import Path

from transferlab.core.digest import file_sha256
from transferlab.core.errors import ParamsError
from transferlab.core.params import Params
from transferlab.core.params_loader import load_params

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


def check_same_values(params_file: Path, used: Params, stage: str) -> None:
    """Fail the stage (before DVC records dvc.lock) when `params_file` no longer holds the values it ran with."""
    try:
        now = load_params(params_file)
    except ParamsError as exc:
        raise ParamsError(f"{params_file.name}: changed while {stage} ran and no longer loads ({exc}); {stage} "
                          f"fails so that DVC records nothing: fix the file and run it again") from None
    changed = _changed_keys(used.model_dump(mode="json"), now.model_dump(mode="json"))
    if changed:
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        raise ParamsError(f"{params_file.name}: {shown} changed while {stage} ran, whose outputs were made with the "
                          f"old values; {stage} fails so that dvc.lock does not record the new ones beside them: "
                          f"run it again")


def _changed_keys(before: dict, after: dict, prefix: str = "") -> list[str]:
    """`key: old -> new` for every dotted key whose value differs."""
    changed = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changed += _changed_keys(old, new, f"{prefix}{key}.")
        elif old != new:
            changed.append(f"{prefix}{key}: {old!r} -> {new!r}")
    return changed


def _forget_old(snapshots: Path) -> None:
    cutoff = time.time() - KEEP_DAYS * 86400
    for path in snapshots.glob("*.sha256"):
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
