"""data.source: table with `s3://bucket/key` files: fetched in parallel from a real S3 server (the stack's SeaweedFS),
into the place a local file of the row would take, resumably; unreadable objects left out with their reason."""

from __future__ import annotations

import io
import json
import os
import random
import socket
import threading

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import run_stages
from transferlab.core.errors import DataError
from transferlab.core.params import TableParams
from transferlab.data.sources import known_classes
from transferlab.data.sources.object_files import WINDOW, fetch_objects, in_parallel
from transferlab.data.sources.table import import_table, table_labels, usable_rows

KEYS = [f"pets/{number}.png" for number in range(6)]  # labels alternate: a, b, a, ...
CORRUPT, FORBIDDEN = "pets/corrupt.png", "secret/x.png"
SECRETS = {"AWS_ACCESS_KEY_ID": "TLWRONGKEYID0000", "AWS_SECRET_ACCESS_KEY": "wrong-secret-never-printed"}


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _free_offset() -> int:
    """A port offset whose ports, and SeaweedFS' gRPC ports 10000 above them, nothing holds."""
    from transferlab.stack.layout import Ports

    def free(port: int) -> bool:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
        return True

    for _ in range(100):
        offset = random.randrange(300, 900)
        ports = list(vars(Ports().shifted(offset)).values())
        if all(free(port) and free(port + 10000) for port in ports):
            return offset
    raise AssertionError("no free ports for an object store")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The stack's object store, started once for this file and stopped at its end, holding six small images, a
    corrupt object and one that a bucket policy forbids reading: (layout, credentials, admin client)."""
    from transferlab.stack import object_store
    from transferlab.stack.daemons import await_ready, start_daemon, stop_daemon
    from transferlab.stack.layout import Ports, StackLayout, save_layout
    from transferlab.stack.secrets import load_or_create

    layout = StackLayout(tmp_path_factory.mktemp("stack"), Ports().shifted(_free_offset()))
    save_layout(layout)
    credentials = load_or_create(layout.credentials_file)
    marker = f"-dir={layout.data('object-store')}"
    pid = start_daemon(object_store.command(layout, credentials), dict(os.environ), layout.log("object-store"),
                       layout.pid_file("object-store"))
    try:
        await_ready("object-store", lambda: object_store.health(layout, credentials) is None, pid,
                    layout.log("object-store"), 120, credentials.all_secrets())
        object_store.create_buckets(layout, credentials)
        s3 = object_store.client(layout, credentials)
        for number, key in enumerate(KEYS):
            s3.put_object(Bucket="images", Key=key, Body=_png(number))
        s3.put_object(Bucket="images", Key=CORRUPT, Body=b"an HTML error page, not an image")
        s3.put_object(Bucket="images", Key=FORBIDDEN, Body=_png(9))
        deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::images/{FORBIDDEN.split('/')[0]}/*"}
        s3.put_bucket_policy(Bucket="images", Policy=json.dumps({"Version": "2012-10-17", "Statement": [deny]}))
        yield layout, credentials, s3
    finally:
        stop_daemon(layout.pid_file("object-store"), marker, grace_s=3)  # SeaweedFS takes 20 s to heed SIGTERM


@pytest.fixture
def as_reader(store, monkeypatch):
    """The environment of a team member with the reader's key, as `transferlab stack env` writes it."""
    layout, credentials, s3 = store
    member = credentials.members["reader"]
    for name, value in {"AWS_ENDPOINT_URL_S3": layout.url("s3"), "AWS_ACCESS_KEY_ID": member["s3_access_key"],
                        "AWS_SECRET_ACCESS_KEY": member["s3_secret_key"], "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return s3


def _table(folder, files: list[str], labels: list[str] | None = None) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    labels = labels or ["ab"[number % 2] for number in range(len(files))]
    pd.DataFrame({"file_name": files, "label": labels}).to_csv(folder / "metadata.csv", index=False)
    return {"data.source": "table", "data.table.path": str(folder / "metadata.csv"), "data.image_size": 32}


def _raw_files(raw) -> dict[str, bytes]:
    images = raw / "images"
    return {path.relative_to(images).as_posix(): path.read_bytes() for path in images.rglob("*") if path.is_file()}


@pytest.mark.slow
def test_objects_land_where_local_files_would_and_unreadable_ones_are_left_out_with_their_reason(tmp_path, as_reader):
    s3 = as_reader
    files = [f"s3://images/{key}" for key in [*KEYS, CORRUPT, "pets/gone.png", FORBIDDEN]]
    run_stages(tmp_path, _table(tmp_path / "src", files), stages=["download", "preprocess"])
    local = tmp_path / "local"  # the same rows with the same bytes in a local folder, its paths as the keys
    for key in [*KEYS, CORRUPT]:
        (local / key).parent.mkdir(parents=True, exist_ok=True)
        (local / key).write_bytes(s3.get_object(Bucket="images", Key=key)["Body"].read())
    import_table(TableParams(path=_table(local, [*KEYS, CORRUPT])["data.table.path"]), tmp_path, tmp_path / "raw")
    assert _raw_files(tmp_path / "data" / "raw") == _raw_files(tmp_path / "raw")
    report = json.loads((tmp_path / "data" / "prepared" / "data_report.json").read_text())
    assert report["left_out"] == [
        {"file": "s3://images/pets/gone.png", "row": "9", "reason": "no such object in the store"},
        {"file": f"s3://images/{FORBIDDEN}", "row": "10", "reason": "no permission to read this object (403)"}]
    # bytes are fetched unchanged; decoding is preprocess' decision, as for a local file
    assert report["skipped_by_reason"] == {"not an image (unrecognised format)": 1} and report["num_images"] == 6


@pytest.mark.slow
def test_a_rerun_after_a_kill_fetches_only_the_objects_it_lacks(tmp_path, as_reader):
    s3 = as_reader
    files = [f"s3://images/{key}" for key in KEYS]
    overrides = _table(tmp_path / "src", files)
    store = tmp_path / ".cache" / "transferlab" / "download" / "objects"  # paths.scratch of params.yaml
    killed = list(fetch_objects(files[:3], store))  # what the killed run had fetched whole
    before = {file: (path.stat().st_ino, path.stat().st_mtime_ns) for file, (path, _) in zip(files, killed)}
    for number, name in ((3, ".{}.tmp-999999999"), (4, "{}")):  # a fetch in progress, a file cut short at its place
        etag = s3.head_object(Bucket="images", Key=KEYS[number])["ETag"].strip('"')
        half = store / "images" / KEYS[number] / name.format(etag)
        half.parent.mkdir(parents=True)
        half.write_bytes(_png(number)[:20])
    run_stages(tmp_path, overrides, stages=["download"])
    raw = tmp_path / "data" / "raw" / "images" / "all"
    for number, (file, (inode, mtime)) in enumerate(before.items()):
        kept = raw / "ab"[number % 2] / KEYS[number]
        assert (kept.stat().st_ino, kept.stat().st_mtime_ns) == (inode, mtime), f"{file} was fetched again"
    assert _raw_files(tmp_path / "data" / "raw") == {f"all/{'ab'[number % 2]}/{key}": _png(number)
                                                     for number, key in enumerate(KEYS)}
    assert not store.exists()  # the resume folder goes once the raw layout holds its files


@pytest.mark.slow
def test_an_object_replaced_in_the_store_since_the_kill_is_fetched_again(tmp_path, as_reader, store):
    """Same key, same size, other bytes: only its ETag tells the whole copy from the killed run is stale."""
    admin = store[2]
    admin.put_object(Bucket="images", Key="replaced/x.png", Body=b"A" * 64)
    files = ["s3://images/replaced/x.png", f"s3://images/{KEYS[1]}"]
    _table(tmp_path / "src", files)
    list(fetch_objects(files[:1], tmp_path / "scratch" / "objects"))
    admin.put_object(Bucket="images", Key="replaced/x.png", Body=b"B" * 64)
    import_table(TableParams(path=str(tmp_path / "src" / "metadata.csv")), tmp_path, tmp_path / "raw",
                 tmp_path / "scratch")
    assert (tmp_path / "raw" / "images" / "all" / "a" / "replaced" / "x.png").read_bytes() == b"B" * 64


@pytest.mark.slow
def test_wrong_keys_a_missing_bucket_or_a_silent_store_are_one_line_naming_the_url(tmp_path, as_reader, monkeypatch,
                                                                                    capsys, store):
    overrides = _table(tmp_path / "src", [f"s3://images/{key}" for key in KEYS])
    cfg = TableParams(path=overrides["data.table.path"])
    endpoint, reader = store[0].url("s3"), {name: os.environ[name] for name in SECRETS}
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(DataError) as refused:
        import_table(cfg, tmp_path, tmp_path / "raw")
    assert str(refused.value) == (f"s3://images: the object store at {endpoint} refuses the keys (InvalidAccessKeyId);"
                                  f" check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    with pytest.raises(AssertionError, match="download exited 1"):
        run_stages(tmp_path, overrides, stages=["download"])
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if "error" in line]
    assert line == f"download: error: {refused.value}" and "Traceback" not in err
    assert not any(secret in err for secret in SECRETS.values())
    for name in SECRETS:  # and none at all: botocore looks for them in its files and the cloud's metadata service
        monkeypatch.delenv(name)
    for name, value in {"AWS_SHARED_CREDENTIALS_FILE": tmp_path / "none", "AWS_CONFIG_FILE": tmp_path / "none",
                        "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, str(value))
    with pytest.raises(DataError, match=f"^s3://images: no keys for the object store at {endpoint}; set "
                                        f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY$"):
        import_table(cfg, tmp_path, tmp_path / "raw")
    for name, value in reader.items():
        monkeypatch.setenv(name, value)
    _table(tmp_path / "src", ["s3://no-such-bucket/a.png", f"s3://images/{KEYS[1]}"])
    with pytest.raises(DataError, match=f"^s3://no-such-bucket: no such bucket in the object store at {endpoint}$"):
        import_table(cfg, tmp_path, tmp_path / "raw")
    with socket.socket() as closed:  # a port that nothing listens on
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{closed.getsockname()[1]}")
        with pytest.raises(DataError, match=r"^s3://no-such-bucket: the object store at http://127.0.0.1:\d+ does not "
                                            r"answer \(EndpointConnectionError\)"):
            import_table(cfg, tmp_path, tmp_path / "raw")


def test_check_params_knows_the_classes_of_a_table_of_objects_without_asking_the_store(tmp_path, monkeypatch):
    with socket.socket() as closed:  # no store answers: check_params must not need one
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{closed.getsockname()[1]}")
        overrides = _table(tmp_path / "src", ["s3://images/a.png", "s3://images/b.png", "s3://images/c.png"],
                           ["cat", "dog", "cat"])
        params = run_stages(tmp_path, overrides, stages=["check_params"])
    from transferlab.core.params_loader import load_params

    assert [entry["name"] for entry in known_classes(load_params(params).data, tmp_path)] == ["cat", "dog"]
    assert table_labels(TableParams(path=overrides["data.table.path"]), tmp_path) == ["cat", "dog"]


def test_urls_that_cannot_name_an_object_file_are_left_out_with_their_reason(tmp_path):
    """The key becomes the file's path under its class folder: it must be a plain relative path, and one key in
    two buckets (or a local file at that path) would be one file there."""
    (tmp_path / "pets").mkdir()
    (tmp_path / "pets" / "local.png").write_bytes(_png(1))
    files = ["gs://images/a.png", "s3://images", "s3://images/", "s3://images/pets/", "s3://images/a/../../b.png",
             "s3://images/a//b.png", "s3://images/x.png", "s3://other/x.png", "s3://other/pets/local.png",
             "pets/local.png", "s3://images/" + "n" * 256]
    frame = pd.DataFrame({"file_name": files, "label": "a"})
    usable, left_out = usable_rows(frame, TableParams(path="metadata.csv"), tmp_path.resolve())
    assert usable["path"].tolist() == ["s3://images/x.png", "s3://other/pets/local.png"]
    assert dict(zip(left_out["file"], left_out["reason"])) == {
        "gs://images/a.png": "a gs:// URL; only s3:// objects are fetched",
        "s3://images": "not an s3://bucket/key URL", "s3://images/": "not an s3://bucket/key URL",
        "s3://images/pets/": "names a folder of the store, not an object",
        "s3://images/a/../../b.png": "its key is not a plain path (an empty, '.' or '..' part)",
        "s3://images/a//b.png": "its key is not a plain path (an empty, '.' or '..' part)",
        "s3://other/x.png": "the same path in data/raw as row 8's file (an object keeps its key as its path)",
        "pets/local.png": "the same path in data/raw as row 10's file (an object keeps its key as its path)",
        "s3://images/" + "n" * 256: "a part of its key is longer than a file name may be (255 bytes)"}


def test_objects_are_fetched_several_at_a_time_and_never_more_than_a_window_ahead():
    """Parallel: the first four fetches wait for one another (a sequential fetch would break the barrier). Flat in
    memory: when the first result is handed on, at most WINDOW rows of a long table have been read."""
    barrier, pulled = threading.Barrier(4, timeout=10), []

    def rows():
        for number in range(20 * WINDOW):
            pulled.append(number)
            yield number

    def fetch(number: int) -> int:
        if number < 4:
            barrier.wait()
        return number

    results = in_parallel(fetch, rows())
    assert next(results) == 0 and len(pulled) <= WINDOW
    assert list(results) == list(range(1, 20 * WINDOW))
