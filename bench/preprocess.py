"""Preprocess throughput and peak memory for N and 4N synthetic images (each size in a fresh process).

    python bench/preprocess.py [--n 400] [--size 224]

Peak RSS covers the stage process and its decode workers; a streaming stage stays flat as N grows.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure(n: int, size: int) -> dict:
    """Run in a child process: generate n images, time prepare_dataset, report peak RSS (self + workers)."""
    from transferlab.core.params import DataParams
    from transferlab.data.preprocess import prepare_dataset
    from transferlab.data.raw_layout import IMAGES_DIR, UNSPLIT, SourceInfo, write_source_info
    from transferlab.data.sources.synthetic import write_synthetic_folder

    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "raw", Path(tmp) / "prepared"
        out.mkdir()
        write_synthetic_folder(raw / IMAGES_DIR / UNSPLIT, 4, n // 4, 320, seed=0)
        write_source_info(raw, SourceInfo("synthetic", "bench"))
        started = time.perf_counter()
        prepare_dataset(raw, out, DataParams(image_size=size), seed=0, progress=False)
        seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"n": n, "images_per_s": n / seconds, "peak_rss_mb": own, "worker_peak_rss_mb": workers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.size)))
        return
    results = []
    for n in (args.n, 4 * args.n):
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--size", str(args.size)],
                             capture_output=True, text=True, check=True, cwd=ROOT)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for r in results:
        print(f"N={r['n']:>5}  {r['images_per_s']:7.1f} images/s  peak RSS {r['peak_rss_mb']:7.1f} MB "
              f"(largest worker {r['worker_peak_rss_mb']:.1f} MB)")
    ratio = results[1]["peak_rss_mb"] / results[0]["peak_rss_mb"]
    print(f"peak RSS 4N / N = {ratio:.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()
