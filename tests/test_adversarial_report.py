"""The adversarial report on the fine-tuned cats/dogs model built from ../shared/assets, read back in Chromium."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from tests.conftest import ASSETS, run_stages

pytestmark = pytest.mark.slow

REPORT = {"adversarial.num_images": 16, "adversarial.epsilons": [0, 1, 4, 8], "adversarial.steps": 10,
          "adversarial.ideal_steps": 100,
          "adversarial.imagenet.weights": str(ASSETS / "weights" / "mobilenet_2_5_224_tf.h5"),
          "adversarial.imagenet.class_index": str(ASSETS / "weights" / "imagenet_class_index.json"),
          "adversarial.replication_image": str(ASSETS / "images" / "samples" / "darknet_dog.jpg")}


@pytest.fixture(scope="module")
def report(cats_dogs_pipeline):
    run_stages(cats_dogs_pipeline, REPORT, ["adversarial_report"])
    return cats_dogs_pipeline / "reports" / "adversarial"


def test_pgd_sweep_meets_the_bar(report):
    metrics = json.loads((report / "metrics.json").read_text())
    sweep = {row["epsilon"]: row for row in metrics["sweep"]}
    assert sweep[0.0]["targeted_success"] == 0.0
    assert sweep[8.0]["targeted_success"] >= 0.95
    robust = [sweep[e]["robust_accuracy"] for e in sorted(sweep)]
    assert robust == sorted(robust, reverse=True) and robust[0] > robust[-1]
    assert all(row["linf_max"] <= row["epsilon"] + 1e-3 for row in sweep.values())
    batch = np.load(report / "images" / "adversarial_batch.npz")
    delta = batch["images"].astype(float) - batch["originals"].astype(float)
    assert np.abs(delta).max() <= 8 + 1  # rounding to uint8 adds at most one level


def test_ideal_cat_and_the_seed_replication(report):
    metrics = json.loads((report / "metrics.json").read_text())
    with_tv, without = metrics["ideal"]["lambda=0.1"], metrics["ideal"]["lambda=0.0"]
    assert with_tv["target_probability"] >= 0.9
    assert with_tv["total_variation"] < without["total_variation"]
    assert metrics["replication"]["target_probability_after"] > metrics["replication"]["target_probability_before"]
    top_after = metrics["imagenet"]["top5_after"][0][0]
    assert top_after == "Siamese_cat" and metrics["imagenet"]["top5_before"][0][0] != "Siamese_cat"


def test_markdown_links_every_image(report):
    markdown = (report / "report.md").read_text()
    for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (report / target).is_file(), target
    assert "## Where the model looks, before and after the attack" in markdown
    assert "images/gradcam_attack.png" in markdown


def test_html_renders_in_chromium_with_every_image_loaded(report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian chromium is not installed (.ci/run installs it)")
    probe = tmp_path / "probe.html"
    script = ("<script>window.addEventListener('load',()=>{const i=[...document.images];"
              "document.title=(i.length&&i.every(x=>x.complete&&x.naturalWidth>0))?'LOADED '+i.length:'BROKEN';});"
              "</script>")
    probe.write_text((report / "report.html").read_text().replace("</head>", script + "</head>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    title = re.search(r"<title>(.*?)</title>", dom.stdout)
    assert title and title.group(1).startswith("LOADED"), dom.stderr[-2000:]
    assert int(title.group(1).split()[1]) >= 6  # the sweep, examples, Grad-CAM, replication, ideal, 2 ImageNet
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *flags, "--window-size=1200,3000", f"--screenshot={shot}", (report / "report.html").as_uri()],
                   capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000
    shutil.copy(shot, report.parent / "report-screenshot.png")  # for a person to look at
