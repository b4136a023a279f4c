"""The data report's checks on the real cats-vs-dogs photos (../shared/assets), as issue 28 asks:

    python bench/data_quality.py [--keep DIR]

1. Near-duplicates: 20 test images are copied into train, each mirrored, resized to 60 % and re-encoded at JPEG
   quality 60. Printed: how many of the 20 the report pairs with their original, and every other pair it reports
   (false pairs, unless the photos hold real near-duplicates: they are listed to look at).
2. Label errors: 5 % of the training images are moved into the other class's folder. Printed: the share of them
   in the top 10 % of the report's ranking (lowest label quality first), of all images and of the training split.

Each scenario is a fresh workspace with params.yaml's defaults except the data (a folder source) and the assets'
MobileNetV2 weights; stages run as their own processes, as under `dvc repro`, untracked.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ASSETS = ROOT.parent / "shared" / "assets"
WEIGHTS = ASSETS / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
PHOTOS = ASSETS / "images" / "cats_vs_dogs"
STAGES = ("download", "preprocess", "extract_features", "data_report")
SHOWN = 15


def workspace(path: Path, photos: Path) -> Path:
    from transferlab.workspace import set_params

    path.mkdir(parents=True)
    for name in ("stages", "transferlab", "params.yaml"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, path / name)
    set_params(path / "params.yaml", {"data.source": "folder", "data.folder.root": str(photos),
                                      "backbone.weights": str(WEIGHTS)})
    return path


def run(path: Path, stages=STAGES) -> float:
    from transferlab.workspace import tool_env

    started = time.perf_counter()
    for stage in stages:
        with open(path / f"{stage}.log", "w", encoding="utf-8") as log:
            code = subprocess.call([sys.executable, "-m", f"stages.{stage}", "--no-track"], cwd=path, env=tool_env(),
                                   stdout=log, stderr=subprocess.STDOUT)
        if code:
            raise SystemExit(f"{stage} failed: see {path / stage}.log")
    return time.perf_counter() - started


def manifest(path: Path) -> pd.DataFrame:
    return pd.read_csv(path / "data" / "prepared" / "manifest.csv")


def planted_copy(source: Path, target: Path) -> None:
    image = Image.open(source).convert("RGB").transpose(Image.FLIP_LEFT_RIGHT)
    image = image.resize((max(1, int(image.width * 0.6)), max(1, int(image.height * 0.6))), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=60)
    target.write_bytes(buffer.getvalue())


def near_duplicates(base: Path, photos: Path, seed: int = 0) -> None:
    planted = base / "dup_photos"
    shutil.copytree(PHOTOS, planted)
    test = manifest(base / "clean")
    test = test[test.split == "test"].sample(20, random_state=seed)
    expected = set()
    for relative, class_name in zip(test.path, test.class_name):
        name = Path(relative).name
        planted_copy(PHOTOS / relative, planted / "train" / class_name / f"copy_{name}")
        expected.add((relative, f"train/{class_name}/copy_{name}"))
    path = workspace(base / "dups", planted)
    seconds = run(path)
    pairs = pd.read_csv(path / "reports" / "data" / "near_duplicates.csv")
    found = {frozenset((a, b)) for a, b in zip(pairs.a, pairs.b)}
    hits = sum(frozenset(pair) in found for pair in expected)
    others = pairs[[frozenset((a, b)) not in {frozenset(p) for p in expected} for a, b in zip(pairs.a, pairs.b)]]
    metrics = pd.read_json(path / "metrics" / "data.json", typ="series")
    print(f"near-duplicates: {hits} of 20 planted copies found; {len(others)} other pairs; threshold "
          f"{metrics['near_duplicate_threshold']}; leakage {int(metrics['test_images_leaked_from_train'])} test images; "
          f"{seconds:.0f} s for {', '.join(STAGES)}")
    calibration = [line for line in (path / "reports" / "data" / "report.md").read_text().splitlines()
                   if line.startswith("Cosine similarity")]
    print("\n".join(calibration))
    if len(others):
        print(others.head(SHOWN).to_string(index=False) + (f"\n... {len(others) - SHOWN} more" if len(others) > SHOWN
                                                           else ""))


def label_errors(base: Path, seed: int = 0) -> None:
    flipped_photos = base / "flipped_photos"
    shutil.copytree(PHOTOS, flipped_photos)
    clean = manifest(base / "clean")
    train = clean[clean.split == "train"]
    chosen = train.sample(int(round(0.05 * len(train))), random_state=seed)
    classes = sorted(clean.class_name.unique())
    moved = set()
    for relative, class_name in zip(chosen.path, chosen.class_name):
        other = classes[1 - classes.index(class_name)]
        source = flipped_photos / relative
        target = source.parent.parent / other / source.name
        source.rename(target)
        moved.add(f"{relative.split('/')[0]}/{other}/{source.name}")
    path = workspace(base / "flips", flipped_photos)
    seconds = run(path)
    ranked = pd.read_csv(path / "reports" / "data" / "label_issues.csv")
    split_of = manifest(path).set_index("path").split
    top = set(ranked.file[: int(0.1 * len(ranked))])
    in_train = ranked[[split_of[f] == "train" for f in ranked.file]]
    top_train = set(in_train.file[: int(0.1 * len(in_train))])
    print(f"label errors: {len(moved)} training labels flipped ({len(moved) / len(train):.1%}); "
          f"{len(moved & top) / len(moved):.0%} of them in the top 10 % of all {len(ranked)} images, "
          f"{len(moved & top_train) / len(moved):.0%} in the top 10 % of the {len(in_train)} training images; "
          f"{int(ranked.flagged.sum())} flagged by find_label_issues, {len(moved & set(ranked.file[ranked.flagged]))}"
          f" of them flipped; {seconds:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="work in a new folder inside this one, and keep it")
    parser.add_argument("--only", choices=("duplicates", "labels"), help="run one scenario")
    parser.add_argument("--seed", type=int, default=0, help="which test photos are copied, which labels flipped")
    args = parser.parse_args()
    if not WEIGHTS.is_file():
        raise SystemExit(f"{WEIGHTS}: not found (this benchmark needs ../shared/assets)")
    base = Path(tempfile.mkdtemp(prefix="data_quality_", dir=args.keep))
    clean = workspace(base / "clean", PHOTOS)
    print(f"clean run: {run(clean, STAGES[:2]):.0f} s (download, preprocess: the splits the scenarios start from)")
    if args.only != "labels":
        near_duplicates(base, PHOTOS, args.seed)
    if args.only != "duplicates":
        label_errors(base, args.seed)
    if not args.keep:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
