"""The same pipeline at two git revisions, side by side: does a change alter what users get?

Each revision's pipeline files are exported from git into a throw-away workspace and run with `dvc repro` on
the offline smoke configuration (synthetic data, random-init ResNet50), or on the dotted-key overrides of a JSON
file (`--overrides`, e.g. the real assets). Prints every numeric figure of the metrics files that differs by more
than the tolerance, and a summary.

    python bench/compare_revisions.py 10dc663 HEAD          # before and after a refactor
    python bench/compare_revisions.py 3dd8ec8 HEAD --overrides oxford.json
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from transferlab.workspace import SMOKE_PARAMS, create_workspace, run_tool  # noqa: E402

FIGURES = ("metrics", "reports/adversarial/metrics.json")


def export(revision: str, target: Path) -> Path:
    """The tree of `revision`, as git has it (no uncommitted changes)."""
    archive = subprocess.run(["git", "archive", revision], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def figures(workspace: Path) -> dict[str, float]:
    """Every number in the pipeline's metrics files, keyed file:dotted.path."""
    flat: dict[str, float] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}", inner)
        elif isinstance(value, list):
            for index, inner in enumerate(value):
                walk(f"{prefix}[{index}]", inner)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[prefix] = float(value)

    for name in FIGURES:
        for path in sorted((workspace / name).rglob("*.json") if (workspace / name).is_dir() else [workspace / name]):
            walk(str(path.relative_to(workspace)) + ":", json.loads(path.read_text()))
    return flat


def run(revision: str, scratch: Path, overrides: dict) -> dict[str, float]:
    source = export(revision, scratch / f"src-{revision}")
    workspace = create_workspace(scratch / f"ws-{revision}", overrides, source=source)
    run_tool(workspace, "dvc", "repro", env={"MLFLOW_TRACKING_URI": ""})
    return figures(workspace)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="relative, and absolute near zero")
    parser.add_argument("--overrides", type=Path, help="JSON {dotted.key: value} instead of the smoke params")
    args = parser.parse_args()
    overrides = json.loads(args.overrides.read_text()) if args.overrides else SMOKE_PARAMS
    with tempfile.TemporaryDirectory() as tmp:
        before, after = (run(rev, Path(tmp), overrides) for rev in (args.before, args.after))
    keys = sorted(set(before) | set(after))
    differ = [key for key in keys if key not in before or key not in after
              or not math.isclose(before[key], after[key], rel_tol=args.tolerance, abs_tol=args.tolerance)]
    for key in differ:
        print(f"{key}: {before.get(key, 'missing')} -> {after.get(key, 'missing')}")
    largest = max((abs(before[k] - after[k]) for k in keys if k in before and k in after), default=0.0)
    print(f"{len(keys)} figures, {len(differ)} differ beyond {args.tolerance}; largest absolute difference {largest:.3g}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
