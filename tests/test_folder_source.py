"""Bring-your-own folders, including the real assets: Kaggle cats/dogs and the Oxford-IIIT 3-breed subset."""

import json
import shutil

import pandas as pd
import pytest

from tests.conftest import prepare_with
from transferlab.data.raw_layout import list_raw_images, read_source_info
from transferlab.data.sources.folder import breed_of, detect_layout, import_folder


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_layouts_are_detected(tmp_path):
    _touch(tmp_path / "classes" / "cat" / "1.jpg")
    _touch(tmp_path / "splits" / "train" / "cat" / "1.jpg")
    _touch(tmp_path / "splits" / "val" / "cat" / "2.jpg")
    _touch(tmp_path / "oxford" / "images" / "Bengal_1.jpg")
    _touch(tmp_path / "oxford" / "annotations" / "list.txt", b"Bengal_1 2 1 2\n")
    assert detect_layout(tmp_path / "classes") == "classes"
    assert detect_layout(tmp_path / "splits") == "splits"
    assert detect_layout(tmp_path / "oxford") == "oxford"


def test_split_aliases_and_hidden_files(tmp_path):
    _touch(tmp_path / "src" / "train" / "cat" / "1.jpg")
    _touch(tmp_path / "src" / "val" / "cat" / "2.jpg")
    _touch(tmp_path / "src" / "test" / "cat" / "nested" / "3.jpg")
    _touch(tmp_path / "src" / "train" / "cat" / ".DS_Store")
    import_folder(tmp_path / "src", tmp_path / "raw")
    found = {(i.source_split, i.relative) for i in list_raw_images(tmp_path / "raw")}
    assert found == {("train", "train/cat/1.jpg"), ("validation", "validation/cat/2.jpg"),
                     ("test", "test/cat/nested/3.jpg")}


def test_breed_names_keep_their_underscores():
    assert breed_of("american_bulldog_12") == "american_bulldog"
    assert breed_of("Abyssinian_5") == "Abyssinian"


def test_kaggle_cats_vs_dogs_keeps_train_and_carves_test_from_validation(tmp_path, assets):
    root = assets / "images" / "cats_vs_dogs"
    prepared = prepare_with(tmp_path, {"data.source": "folder", "data.folder.root": str(root),
                                       "data.image_size": 64, "data.test_fraction": 0.2})
    manifest = pd.read_csv(prepared / "manifest.csv")
    assert manifest["source_split"].value_counts().to_dict() == {"train": 1000, "validation": 500}
    assert manifest["split"].value_counts().to_dict() == {"train": 1000, "validation": 400, "test": 100}
    assert manifest.groupby(["split", "class_name"]).size()["test"].to_dict() == {"cats": 50, "dogs": 50}
    assert json.loads((prepared / "data_report.json").read_text())["num_skipped"] == 0


def test_oxford_layout_honours_the_official_lists_and_decodes_odd_files(tmp_path, assets):
    root = assets / "images" / "oxford_pets_3breeds"
    prepared = prepare_with(tmp_path, {"data.source": "folder", "data.folder.root": str(root),
                                       "data.image_size": 64, "data.val_fraction": 0.2})
    manifest = pd.read_csv(prepared / "manifest.csv")
    trainval = manifest[manifest["source_split"] == "train"]
    assert len(trainval) == 300 and (manifest["source_split"] == "test").sum() == 298
    assert (manifest["split"] == "test").sum() == 298
    assert sorted(manifest["class_name"].unique()) == ["Abyssinian", "Bengal", "american_bulldog"]
    assert "test/Abyssinian/Abyssinian_5.jpg" in set(manifest["path"])  # an RGBA PNG named .jpg
    report = json.loads((prepared / "data_report.json").read_text())
    assert report["num_skipped"] == 0
    assert {e["file"] for e in report["left_out"]} == {"Abyssinian_34.jpg", "Abyssinian_82.jpg"}
    species = {c["name"]: c["species"] for c in json.loads((prepared / "classes.json").read_text())}
    assert species == {"Abyssinian": "cat", "Bengal": "cat", "american_bulldog": "dog"}


def test_oxford_unlisted_images_can_join_training_and_the_gif_decodes(tmp_path, assets):
    source = assets / "images" / "oxford_pets_3breeds"
    root = tmp_path / "oxford"
    (root / "images").mkdir(parents=True)
    shutil.copytree(source / "annotations", root / "annotations")
    for name in ("Abyssinian_34.jpg", "Abyssinian_100.jpg", "Bengal_1.jpg", "american_bulldog_10.jpg"):
        shutil.copy(source / "images" / name, root / "images" / name)
    info = import_folder(root, tmp_path / "raw", unlisted="train")
    assert info.left_out == []
    prepared = prepare_with(tmp_path / "run", {"data.source": "folder", "data.folder.root": str(root),
                                               "data.folder.unlisted": "train", "data.image_size": 32,
                                               "data.val_fraction": 0.0})
    manifest = pd.read_csv(prepared / "manifest.csv")
    assert "train/Abyssinian/Abyssinian_34.jpg" in set(manifest["path"])  # a GIF named .jpg
    assert read_source_info(tmp_path / "run" / "data" / "raw").source == "folder"


def _image_bytes(seed: int) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_symlink_loop_is_walked_once_and_reported(tmp_path):
    """Issue 14, finding 2: `ln -s .. cats/loop` once made 20 images into 1,220 rows, dogs labelled cats."""
    src = tmp_path / "src"
    for index in range(3):
        _touch(src / "cats" / f"c{index}.png", _image_bytes(index))
        _touch(src / "dogs" / f"d{index}.png", _image_bytes(10 + index))
    (src / "cats" / "loop").symlink_to("..", target_is_directory=True)
    (src / "cats" / "again").symlink_to(".", target_is_directory=True)
    outside = tmp_path / "elsewhere"
    _touch(outside / "secret.png", _image_bytes(99))
    (src / "dogs" / "out").symlink_to(outside, target_is_directory=True)
    info = import_folder(src, tmp_path / "raw")
    found = sorted(i.relative for i in list_raw_images(tmp_path / "raw"))
    assert found == [f"all/cats/c{i}.png" for i in range(3)] + [f"all/dogs/d{i}.png" for i in range(3)]
    reasons = {entry["file"]: entry["reason"] for entry in info.left_out}
    assert "out of its class folder" in reasons["cats/loop"] and "out of its class folder" in reasons["dogs/out"]
    assert "already read" in reasons["cats/again"] and set(reasons) == {"cats/loop", "cats/again", "dogs/out"}


def test_byte_identical_images_across_classes_and_splits_are_reported(tmp_path):
    src = tmp_path / "src"
    same = _image_bytes(7)
    _touch(src / "train" / "cat" / "a.png", same)
    _touch(src / "train" / "dog" / "b.png", same)  # the same photo labelled twice
    _touch(src / "test" / "cat" / "c.png", same)  # and again in test
    _touch(src / "train" / "cat" / "d.png", _image_bytes(8))
    _touch(src / "test" / "dog" / "e.png", _image_bytes(9))
    prepared = prepare_with(tmp_path, {"data.source": "folder", "data.folder.root": str(src),
                                       "data.val_fraction": 0.0, "data.test_fraction": 0.0})
    report = json.loads((prepared / "data_report.json").read_text())
    assert report["duplicates"] == {"across_classes": [["test/cat/c.png", "train/cat/a.png", "train/dog/b.png"]],
                                    "across_splits": [["test/cat/c.png", "train/cat/a.png", "train/dog/b.png"]]}
    assert any("two classes" in w for w in report["warnings"]) and any("two splits" in w for w in report["warnings"])


def test_file_names_that_are_not_utf8_are_left_out_and_reported(tmp_path):
    import os

    src = tmp_path / "src"
    _touch(src / "cats" / "ok.png", _image_bytes(1))
    _touch(src / "dogs" / "ok.png", _image_bytes(2))
    bad = os.fsdecode(b"bad\xffname.png")
    _touch(src / "cats" / bad, _image_bytes(3))
    _touch(src / os.fsdecode(b"bir\xfeds") / "x.png", _image_bytes(4))
    info = import_folder(src, tmp_path / "raw")
    assert sorted(i.relative for i in list_raw_images(tmp_path / "raw")) == ["all/cats/ok.png", "all/dogs/ok.png"]
    assert {entry["file"]: entry["reason"] for entry in info.left_out} == {
        "cats/bad\\xffname.png": "file name is not valid UTF-8; rename the file",
        "bir\\xfeds": "class folder name is not valid UTF-8; rename the folder"}
    json.dumps(info.left_out, ensure_ascii=False).encode("utf-8")  # writable into source.json


def _special_files(folder) -> None:
    """A FIFO, a Unix socket and a link to /dev/zero, named as images: reading any of them would hang or never end."""
    import os
    import socket

    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "pipe.png")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(folder / "sock.png"))
    listener.close()  # the socket file stays
    (folder / "zero.png").symlink_to("/dev/zero")


@pytest.mark.timeout(60)
def test_fifos_sockets_and_devices_are_left_out_with_their_kind_never_opened(tmp_path):
    """Issue 31: a file walk reads regular files only; the others are listed with what they are."""
    src = tmp_path / "src"
    for index in range(3):
        _touch(src / "cats" / f"c{index}.png", _image_bytes(index))
        _touch(src / "dogs" / f"d{index}.png", _image_bytes(10 + index))
    _special_files(src / "cats")
    info = import_folder(src, tmp_path / "raw")
    assert len(list_raw_images(tmp_path / "raw")) == 6
    reasons = {entry["file"]: entry["reason"] for entry in info.left_out}
    assert reasons["cats/pipe.png"] == "a FIFO (named pipe), not an image file; not opened"
    assert reasons["cats/sock.png"] == "a socket, not an image file; not opened"
    assert reasons["cats/zero.png"].startswith("symlink out of its class folder (to /dev/zero)")
