"""tfds sources without the network: fail fast offline, and read a hand-downloaded cats_vs_dogs zip."""

import io
import json
import socket
import time
import zipfile

import pytest
from PIL import Image

from tests.conftest import prepare_with
from transferlab.core.errors import DataError
from transferlab.core.params import TfdsParams
from transferlab.data.sources.tfds_source import import_tfds


@pytest.fixture
def offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("name", ["oxford_iiit_pet", "cats_vs_dogs"])
def test_offline_download_fails_in_seconds_and_says_what_to_do(tmp_path, offline, name):
    cfg = TfdsParams(name=name, data_dir=str(tmp_path / "tfds"))
    started = time.monotonic()
    with pytest.raises(DataError) as error:
        import_tfds(cfg, tmp_path / "raw")
    assert time.monotonic() - started < 30
    message = str(error.value)
    assert "data.tfds.manual_dir" in message and "data.folder.root" in message and "\n" not in message


def _jpeg(color):
    buffer = io.BytesIO()
    Image.new("RGB", (24, 24), color).save(buffer, "JPEG")
    return buffer.getvalue()


def test_cats_vs_dogs_zip_from_manual_dir_counts_corrupt_files_itself(tmp_path, offline):
    manual = tmp_path / "manual"
    manual.mkdir()
    with zipfile.ZipFile(manual / "kagglecatsanddogs_5340.zip", "w") as archive:
        for n in range(3):
            archive.writestr(f"PetImages/Cat/{n}.jpg", _jpeg((200, 50, 50)))
            archive.writestr(f"PetImages/Dog/{n}.jpg", _jpeg((50, 50, 200)))
        archive.writestr("PetImages/Cat/666.jpg", b"")  # the real zip has such files
        archive.writestr("PetImages/Dog/11702.jpg", b"GIF89a broken")
        archive.writestr("PetImages/Cat/Thumbs.db", b"junk")
        archive.writestr("readme[1].txt", b"readme")
    prepared = prepare_with(tmp_path, {"data.source": "tfds", "data.tfds.name": "cats_vs_dogs",
                                       "data.tfds.data_dir": str(tmp_path / "tfds"),
                                       "data.tfds.manual_dir": str(manual), "data.image_size": 32,
                                       "data.val_fraction": 0.0, "data.test_fraction": 0.0})
    report = json.loads((prepared / "data_report.json").read_text())
    assert report["totals"]["train"] == 6 and report["num_skipped"] == 2
    assert "differs from the tfds registry" in report["source"]
    assert report["classes"] == ["cat", "dog"]
