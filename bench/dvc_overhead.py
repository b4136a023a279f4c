"""DVC's own overhead on this pipeline: a no-op `dvc repro` and `dvc status` once everything is up to date.

    python bench/dvc_overhead.py [--repeats 3]      (target: under 5 s each on the 2-core machine)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

def timed(workspace: Path, *command: str) -> float:
    from transferlab.workspace import run_tool

    started = time.perf_counter()
    run_tool(workspace, *command)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from transferlab.workspace import SMOKE_PARAMS, create_workspace, run_tool

    with tempfile.TemporaryDirectory() as tmp:
        workspace = create_workspace(Path(tmp) / "ws", {**SMOKE_PARAMS, "data.synthetic.images_per_class": 5})
        run_tool(workspace, "dvc", "repro")
        for name, command in (("no-op dvc repro", ("dvc", "repro")), ("dvc status", ("dvc", "status"))):
            times = [timed(workspace, *command) for _ in range(args.repeats)]
            print(f"{name:16s} median {statistics.median(times):5.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times)};"
                  f" target < 5 s)")


if __name__ == "__main__":
    main()
