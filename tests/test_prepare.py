"""preprocess on generated data: corrupt files are reported, shards hold exactly the manifest."""

import json
import os

import pandas as pd
import pytest

from tests.conftest import prepare_with, run_stages
from tests.corrupt_files import bad_files, good_files, write_corrupt_folder
from transferlab.data.prepared import image_dataset, shard_files


def _read_shards(prepared, split):
    dataset = image_dataset(prepared, split, 1, with_keys=True).unbatch()
    return [(image.numpy(), int(label), key.numpy().decode()) for image, label, key in dataset]


def test_corrupt_folder_is_processed_and_every_bad_file_reported(tmp_path):
    write_corrupt_folder(tmp_path / "images")
    prepared = prepare_with(tmp_path, {"data.source": "folder", "data.folder.root": str(tmp_path / "images"),
                                       "data.image_size": 32, "data.val_fraction": 0.0, "data.test_fraction": 0.0})
    report = json.loads((prepared / "data_report.json").read_text())
    skipped = {entry["file"].split("/")[-1]: entry["reason"] for entry in report["skipped"]}
    assert set(skipped) == set(bad_files())
    for name, (_, word) in bad_files().items():
        assert word in skipped[name]
    manifest = pd.read_csv(prepared / "manifest.csv")
    assert sorted(manifest["path"].str.split("/").str[-1]) == sorted(good_files())
    assert report["num_images"] == len(good_files()) and report["num_skipped"] == len(bad_files())


def test_shards_hold_the_manifest_with_resized_images(tmp_path):
    prepared = prepare_with(tmp_path, {"data.source": "synthetic", "data.synthetic.images_per_class": 15,
                                       "data.image_size": 40, "data.shard_size": 7})
    manifest = pd.read_csv(prepared / "manifest.csv")
    classes = json.loads((prepared / "classes.json").read_text())
    assert [c["name"] for c in classes] == ["class_0", "class_1", "class_2"]
    for split in ("train", "validation", "test"):
        records = _read_shards(prepared, split)
        expected = manifest[manifest["split"] == split]
        assert sorted(key for _, _, key in records) == sorted(expected["path"])
        assert {key: label for _, label, key in records} == dict(zip(expected["path"], expected["label"]))
        assert len(shard_files(prepared, split)) == -(-len(expected) // 7)
    assert _read_shards(prepared, "train")[0][0].shape == (40, 40, 3)
    assert manifest["sha256"].str.len().eq(64).all()


def test_a_rerun_in_another_process_writes_the_same_bytes(tmp_path):
    """Issue 42: every rerun's shards differed byte for byte (protobuf wrote the features map in an order hashed
    per process), so DVC re-ran everything downstream and the data gate saw other data. A second preprocess of
    the same raw data, in a fresh process, must write the same files by md5, each record in canonical form."""
    import hashlib
    import subprocess
    import sys

    import tensorflow as tf

    from tests.conftest import PROJECT_ROOT

    first = prepare_with(tmp_path, {"data.source": "synthetic", "data.synthetic.images_per_class": 6,
                                    "data.image_size": 32})
    second = tmp_path / "again"
    second.mkdir()
    script = ("import sys; from pathlib import Path; from transferlab.core.params_loader import load_params; "
              "from transferlab.data.preprocess import prepare_dataset; params = load_params(Path(sys.argv[1])); "
              "prepare_dataset(Path(sys.argv[2]), Path(sys.argv[3]), params.data, params.base.seed, progress=False)")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "params.yaml"), str(tmp_path / "data" / "raw"),
                    str(second)], cwd=PROJECT_ROOT, check=True, capture_output=True, timeout=300)

    def md5s(folder):
        return {path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}

    assert len(shard_files(first, "train")) > 0 and md5s(first) == md5s(second)
    for record in tf.data.TFRecordDataset([str(path) for path in sorted(first.glob("*.tfrecord"))]):
        data = record.numpy()
        assert data == tf.train.Example.FromString(data).SerializeToString(deterministic=True)


def test_folder_without_images_fails_clearly(tmp_path, capsys):
    (tmp_path / "images" / "cats").mkdir(parents=True)
    with pytest.raises(AssertionError, match="preprocess exited 1"):
        prepare_with(tmp_path, {"data.source": "folder", "data.folder.root": str(tmp_path / "images")})
    assert "no image files found" in capsys.readouterr().err


def test_awkward_folder_names_sizes_and_a_one_image_class(tmp_path):
    import io

    from PIL import Image

    from tests.corrupt_files import good_files

    images = tmp_path / "images"
    classes = {"with space": 6, "ünïcode-猫": 6, "a..b": 6, "single": 1}
    for name, count in classes.items():
        (images / name).mkdir(parents=True)
        for i in range(count):
            (images / name / f"{i}.jpg").write_bytes(good_files()["plain.jpg"])
    for name, fmt in (("huge.jpg", "JPEG"), ("huge.png", "PNG")):  # 12 megapixels, for a 32 px model
        buffer = io.BytesIO()
        Image.new("RGB", (4000, 3000), (200, 30, 30)).save(buffer, fmt)
        (images / "with space" / name).write_bytes(buffer.getvalue())
    for name in ("tiny.png", "sixteen_bit.png", "exif_rotated.jpg"):
        (images / "a..b" / name).write_bytes(good_files()[name])
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    prepared = prepare_with(tmp_path, {"data.source": "folder", "data.folder.root": str(images), "data.image_size": 32})
    names = [c["name"] for c in json.loads((prepared / "classes.json").read_text())]
    assert sorted(names) == sorted(classes)
    report = json.loads((prepared / "data_report.json").read_text())
    # the JPEG decodes at an eighth of its size; the PNG has no reduced decode and is 46 times what the model can use
    assert [entry["file"] for entry in report["skipped"]] == ["all/with space/huge.png"]
    assert report["skipped"][0]["reason"].startswith("too large: 4000x3000 pixels is over the limit of 0.262")
    assert report["num_images"] == sum(classes.values()) + 4
    manifest = pd.read_csv(prepared / "manifest.csv")
    assert (manifest["path"].str.endswith("huge.jpg")).sum() == 1
    single = manifest[manifest["label"] == names.index("single")]
    assert list(single["split"]) == ["train"]  # one image: it trains; validation and test cannot hold it
    after = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert {p for p in after if not p.startswith("data")} - {"params.yaml"} == set(before)  # nothing outside data/


def test_a_decompression_bomb_is_skipped_with_its_reason(tmp_path):
    """Issue 14, finding 6: preprocess decoded a 20000x20000 file in full (2.8 GB)."""
    from tests.corrupt_files import good_files
    from tests.test_images import _png_header_only

    images = tmp_path / "images"
    for name in ("cat", "dog"):
        for i in range(3):
            (images / name).mkdir(parents=True, exist_ok=True)
            (images / name / f"{i}.jpg").write_bytes(good_files()["plain.jpg"])
    (images / "cat" / "bomb.png").write_bytes(_png_header_only(20000, 20000))
    prepared = prepare_with(tmp_path, {"data.source": "folder", "data.folder.root": str(images), "data.image_size": 32})
    report = json.loads((prepared / "data_report.json").read_text())
    assert [entry["file"] for entry in report["skipped"]] == ["all/cat/bomb.png"]
    assert report["skipped"][0]["reason"].startswith("too large: 20000x20000 pixels")
    assert report["num_images"] == 6


def test_augmented_batches_are_the_same_on_every_run(tmp_path):
    """Fine-tuning is a pure function of its inputs only if its augmentation is: Keras' random layers draw from a
    stateful seed generator, which a parallel map would hand out in thread order."""
    import keras
    import numpy as np

    from transferlab.core.params import FineTuneParams
    from transferlab.modeling.fine_tuning import augmentation

    prepared = prepare_with(tmp_path, {"data.source": "synthetic", "data.synthetic.images_per_class": 40,
                                       "data.image_size": 96, "data.val_fraction": 0.0, "data.test_fraction": 0.0})

    def draw():
        keras.utils.set_random_seed(0)
        augment = augmentation(FineTuneParams(rotation=0.2, zoom=0.3), seed=0)
        return [x.numpy() for x, _ in image_dataset(prepared, "train", 4, shuffle=True, augment=augment, seed=0)]

    runs = [draw() for _ in range(3)]
    assert len(runs[0]) == 30
    for other in runs[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(runs[0], other))


def test_preprocess_refuses_images_of_a_single_class_as_the_data_s_fault(tmp_path, capsys):
    """Issue 42: one class was refused by a message about the adversarial target."""
    images = tmp_path / "images" / "cats"
    images.mkdir(parents=True)
    for index in range(4):
        (images / f"{index}.jpg").write_bytes(good_files()["plain.jpg"])
    with pytest.raises(AssertionError, match="preprocess exited 1"):
        run_stages(tmp_path, {"data.source": "folder", "data.folder.root": str(tmp_path / "images")},
                   stages=["download", "preprocess"])
    error = capsys.readouterr().err
    assert "the images are of 1 class ['cats']; a classifier needs at least two" in error
    assert "adversarial" not in error and not (tmp_path / "data" / "prepared").exists()


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["ctrl-c", "SIGTERM", "SIGKILL"])
def test_a_stopped_preprocess_leaves_none_of_its_decode_workers(tmp_path, stop):
    """Issue 42: a killed preprocess left its spawn pool's workers waiting for work forever; at Ctrl-C each worker
    printed a KeyboardInterrupt traceback. Two workers, the defaults' images (params.yaml's num_workers is one per
    core: this machine may have one)."""
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import PROJECT_ROOT, run_stages
    from tests.process_trees import commands, marked, survivors

    params = run_stages(tmp_path, {"data.source": "synthetic", "data.num_workers": 2}, ("download",))
    env = marked(os.environ)
    stage = subprocess.Popen([sys.executable, "-m", "stages.preprocess", "--params", str(params), "--no-track"],
                             cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    while sum("spawn_main" in command for command in commands(env)) < 2:
        assert stage.poll() is None, stage.stdout.read()  # the workers decode for seconds: the stage is still there
        time.sleep(0.05)
    if stop == "ctrl-c":
        os.killpg(stage.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole foreground group
    else:
        stage.send_signal(getattr(signal, stop))
    output, _ = stage.communicate(timeout=60)
    if stop != "SIGKILL":
        assert stage.returncode == 130 and output.strip().splitlines()[-1].startswith("preprocess: interrupted;")
        assert "Traceback" not in output, output
    assert survivors(env) == []


def test_decode_workers_are_no_more_than_the_cores_and_memory_there_are(tmp_path, monkeypatch, caplog):
    """Issue 42: `data.num_workers: 64` on 36 images spawned 64 decode processes, 9.7 GB on a 2-core machine. The
    counts are this test's (2 cores, 22 GB free), not the machine's."""
    import logging
    import multiprocessing

    from transferlab.core import resources

    monkeypatch.setattr(resources, "usable_cores", lambda: 2)
    monkeypatch.setattr(resources, "available_memory", lambda: 22 * 10**9)
    pools, get_context = [], multiprocessing.get_context

    class Recording:
        def __init__(self, method):
            self.context = get_context(method)

        def Pool(self, processes, *initializer):  # noqa: N802 - multiprocessing's name
            pools.append(processes)
            return self.context.Pool(processes, *initializer)

    monkeypatch.setattr(multiprocessing, "get_context", Recording)
    with caplog.at_level(logging.WARNING, "transferlab.resources"):
        prepared = prepare_with(tmp_path, {"data.source": "synthetic", "data.synthetic.images_per_class": 12,
                                           "data.image_size": 32, "data.num_workers": 64})
    assert pools == [2] and len(pd.read_csv(prepared / "manifest.csv")) == 36
    assert "data.num_workers: 64 lowered to 2 (2 cores, 22 GB free" in caplog.text
