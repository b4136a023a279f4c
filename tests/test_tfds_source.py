"""tfds sources without the network: fail fast offline, and read a hand-downloaded cats_vs_dogs zip."""

import io
import json
import socket
import urllib.request
import zipfile
from urllib.parse import urlparse

import pytest
from PIL import Image

from tests.conftest import prepare_with
from transferlab.core.errors import DataError
from transferlab.core.params import TfdsParams
from transferlab.data.sources.tfds_source import import_tfds


@pytest.fixture
def offline(monkeypatch):
    """No network: every connection attempt is refused and recorded; a download would fail the test."""
    attempts = []

    def refuse(address, *args, **kwargs):
        attempts.append(address)
        raise socket.gaierror(-2, "Name or service not known")

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted after the reachability check failed")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", no_download)
    return attempts


@pytest.mark.parametrize("name", ["oxford_iiit_pet", "cats_vs_dogs"])
def test_offline_download_stops_at_one_reachability_check_and_says_what_to_do(tmp_path, offline, name):
    from tensorflow_datasets.core.utils import gcs_utils

    from transferlab.data.sources.tfds_source import builder_for

    cfg = TfdsParams(name=name, data_dir=str(tmp_path / "tfds"))
    with pytest.raises(DataError) as error:
        import_tfds(cfg, tmp_path / "raw")
    hosts = {urlparse(url).hostname for url in builder_for(cfg).url_infos}
    # Behaviour, not wall time: one refused TCP probe of the dataset's own host, then the error. tfds' GCS
    # mirror (reached through TensorFlow's file system, which no Python patch sees) stays off.
    assert len(offline) == 1 and offline[0][0] in hosts and offline[0][1] == 443
    assert gcs_utils._is_gcs_disabled
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
