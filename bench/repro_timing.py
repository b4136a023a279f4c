"""A whole `dvc repro` of a fixed configuration, timed stage by stage: start-up (Python, TensorFlow, MLflow,
params) versus the stage's own work, from the two lines every stage logs, and what DVC adds between them.

    python bench/repro_timing.py [--runs 1] [--keep]

Configuration: the Oxford-IIIT Pet 3-breed assets (600 photos), MobileNetV2 1.0 @224 with the assets'
ImageNet weights, every other param at its default; each run in a fresh workspace (nothing cached), tracked
into its own mlflow.db. Needs ../shared/assets. Prints a markdown table (medians over runs).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ASSETS = ROOT.parent / "shared" / "assets"
PARAMS = {"data.source": "folder", "data.folder.root": str(ASSETS / "images" / "oxford_pets_3breeds"),
          "backbone.weights": str(ASSETS / "weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5")}
STARTS = re.compile(r"transferlab\.progress INFO (\S+): work starts after ([\d.]+) s of start-up")
DONE = re.compile(r"transferlab\.progress INFO (\S+): work done in ([\d.]+) s")


def one_run(folder: Path) -> tuple[float, dict[str, tuple[float, float]], str]:
    """Total seconds, stage -> (start-up, work), and the output."""
    from transferlab.workspace import create_workspace, run_tool

    workspace = create_workspace(folder / "ws", PARAMS)
    started = time.monotonic()
    result = run_tool(workspace, sys.executable, "-m", "transferlab", "repro", env={"MLFLOW_TRACKING_URI": ""},
                      timeout=3600)
    total = time.monotonic() - started
    output = result.stdout + result.stderr
    startups = {m.group(1): float(m.group(2)) for m in STARTS.finditer(output)}
    works = {m.group(1): float(m.group(2)) for m in DONE.finditer(output)}
    return total, {stage: (startups[stage], works.get(stage, float("nan"))) for stage in startups}, output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="print the last run's whole output")
    args = parser.parse_args()
    if not (ASSETS / "SOURCES.md").is_file():
        sys.exit(f"bench/repro_timing.py: needs the assets at {ASSETS}")
    totals, stages, output = [], {}, ""
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as folder:
            total, timing, output = one_run(Path(folder))
        totals.append(total)
        for stage, pair in timing.items():
            stages.setdefault(stage, []).append(pair)
    total = statistics.median(totals)
    print(f"`dvc repro` from scratch, Oxford 3 breeds (600 photos), MobileNetV2 1.0 @224, defaults; "
          f"median of {args.runs}: {total:.0f} s (runs: {', '.join(f'{t:.0f}' for t in totals)})\n")
    print("| stage | start-up (s) | work (s) | share of the run |")
    print("|---|---|---|---|")
    accounted = 0.0
    for stage, pairs in stages.items():
        startup = statistics.median(pair[0] for pair in pairs)
        work = statistics.median(pair[1] for pair in pairs)
        accounted += startup + work
        print(f"| {stage} | {startup:.1f} | {work:.1f} | {100 * (startup + work) / total:.0f} % |")
    startup_total = sum(statistics.median(pair[0] for pair in pairs) for pairs in stages.values())
    print(f"| all stages | {startup_total:.1f} | {accounted - startup_total:.1f} | {100 * accounted / total:.0f} % |")
    print(f"| DVC between stages (hashing, lock, checks) | | {total - accounted:.1f} | "
          f"{100 * (total - accounted) / total:.0f} % |")
    if args.keep:
        print(output)


if __name__ == "__main__":
    main()
