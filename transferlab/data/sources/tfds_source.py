"""TensorFlow Datasets sources (oxford_iiit_pet, cats_vs_dogs), exported into the raw layout.

tfds retries a failing download for minutes; we check up front that every archive is either in
`manual_dir` or reachable, so an offline machine gets a clear answer in seconds.
"""

from __future__ import annotations

import re
import shutil
import socket
import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from transferlab.core.digest import file_sha256
from transferlab.core.errors import DataError
from transferlab.core.params import TfdsParams
from transferlab.data.raw_layout import IMAGES_DIR, UNSPLIT, SourceInfo

CATS_VS_DOGS_MEMBER = re.compile(r"^PetImages[\\/](Cat|Dog)[\\/](\d+)\.jpg$")
# The 37 Oxford-IIIT Pet breeds (tfds' label names): the dataset names cat breeds with a capital letter.
OXFORD_BREEDS = (
    "Abyssinian american_bulldog american_pit_bull_terrier basset_hound beagle Bengal Birman Bombay boxer "
    "British_Shorthair chihuahua Egyptian_Mau english_cocker_spaniel english_setter german_shorthaired "
    "great_pyrenees havanese japanese_chin keeshond leonberger Maine_Coon miniature_pinscher newfoundland Persian "
    "pomeranian pug Ragdoll Russian_Blue saint_bernard samoyed scottish_terrier shiba_inu Siamese Sphynx "
    "staffordshire_bull_terrier wheaten_terrier yorkshire_terrier").split()


def tfds_species(name: str) -> dict[str, str]:
    """Each class of a tfds dataset with its species, known without downloading anything."""
    if name == "cats_vs_dogs":
        return {"cat": "cat", "dog": "dog"}
    return {breed: "cat" if breed[0].isupper() else "dog" for breed in OXFORD_BREEDS}


def builder_for(cfg: TfdsParams):
    import tensorflow_datasets as tfds

    return tfds.builder(cfg.name, data_dir=str(Path(cfg.data_dir).expanduser()))


def _manual_file(cfg: TfdsParams, filename: str) -> Path | None:
    if cfg.manual_dir is None:
        return None
    candidate = Path(cfg.manual_dir).expanduser() / filename
    return candidate if candidate.is_file() else None


def check_reachable(cfg: TfdsParams, url_infos: dict) -> None:
    """Raise DataError in seconds when an archive is neither in manual_dir nor downloadable."""
    for url, info in url_infos.items():
        if _manual_file(cfg, info.filename):
            continue
        host = urlparse(url).hostname or url
        try:
            socket.create_connection((host, 443), timeout=min(cfg.download_timeout_s, 10.0)).close()
        except OSError as exc:
            names = ", ".join(sorted(i.filename for i in url_infos.values()))
            raise DataError(
                f"data.tfds: cannot reach {host} to download {cfg.name} ({exc.__class__.__name__}); "
                f"download {names} by hand into a folder and set data.tfds.manual_dir to it, or use your own "
                f"images: dvc exp run -S data.source=folder -S data.folder.root=<folder> (README: Your own "
                f"images); to see the whole pipeline offline first: make demo"
            ) from None


def import_tfds(cfg: TfdsParams, raw_dir: Path) -> SourceInfo:
    builder = builder_for(cfg)
    url_infos = dict(builder.url_infos or {})
    if cfg.name == "cats_vs_dogs":
        return _import_cats_vs_dogs(cfg, url_infos, raw_dir)
    return _import_prepared(cfg, builder, url_infos, raw_dir)


def _import_prepared(cfg: TfdsParams, builder, url_infos: dict, raw_dir: Path) -> SourceInfo:
    """Let tfds download (checksums verified) and prepare, then write each image's original bytes out."""
    import tensorflow_datasets as tfds

    if not builder.is_prepared():
        check_reachable(cfg, url_infos)
        manual = str(Path(cfg.manual_dir).expanduser()) if cfg.manual_dir else None
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
    features = builder.info.features
    species: dict[str, str] = {}
    for tfds_split, split in (("train", "train"), ("test", "test")):
        dataset = builder.as_dataset(split=tfds_split, decoders={"image": tfds.decode.SkipDecoding()})
        for example in tfds.as_numpy(dataset):
            breed = features["label"].int2str(int(example["label"]))
            species[breed] = features["species"].int2str(int(example["species"])).lower()
            target = raw_dir / IMAGES_DIR / split / breed / example["file_name"].decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(example["image"])
    return SourceInfo("tfds", f"tfds {cfg.name} {builder.version} (official trainval/test)", species)


def _import_cats_vs_dogs(cfg: TfdsParams, url_infos: dict, raw_dir: Path) -> SourceInfo:
    """tfds' builder raises unless exactly 1,738 files are corrupt, which the re-published zip breaks:
    fetch the archive the tfds way but read it ourselves; preprocess decodes and counts bad files."""
    (url, info), = url_infos.items()
    archive = _manual_file(cfg, info.filename)
    if archive is None:
        check_reachable(cfg, url_infos)
        archive = _download(url, Path(cfg.data_dir).expanduser() / "downloads" / info.filename, cfg.download_timeout_s)
    digest = file_sha256(archive)
    note = "checksum verified" if digest == info.checksum else (
        f"sha256 {digest} differs from the tfds registry's {info.checksum} (the zip was re-published)")
    written = extract_cats_vs_dogs(archive, raw_dir / IMAGES_DIR / UNSPLIT)
    if written == 0:
        raise DataError(f"data.tfds.manual_dir: {archive} holds no PetImages/Cat|Dog/*.jpg entries")
    return SourceInfo("tfds", f"tfds cats_vs_dogs archive {archive.name}: {note}", tfds_species("cats_vs_dogs"))


def extract_cats_vs_dogs(archive: Path, target: Path) -> int:
    """Write PetImages/{Cat,Dog}/N.jpg as <target>/{cat,dog}/N.jpg, bytes unchanged; returns the count."""
    count = 0
    with zipfile.ZipFile(archive) as zipped:
        for member in zipped.namelist():
            match = CATS_VS_DOGS_MEMBER.match(member)
            if not match:
                continue
            path = target / match.group(1).lower() / f"{match.group(2)}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            with zipped.open(member) as source, path.open("wb") as sink:
                shutil.copyfileobj(source, sink)
            count += 1
    return count


def _download(url: str, target: Path, timeout_s: float) -> Path:
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".partial")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, partial.open("wb") as sink:
            shutil.copyfileobj(response, sink, length=1 << 20)
    except OSError as exc:
        raise DataError(f"data.tfds: download of {url} failed ({exc}); set data.tfds.manual_dir") from None
    partial.replace(target)
    return target

