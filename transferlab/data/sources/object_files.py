"""A labels table's files that are objects in an S3-compatible store (`s3://bucket/key`), fetched through s3fs.

The store and its keys come from the environment, as every S3 client reads them: AWS_ENDPOINT_URL_S3 (or
AWS_ENDPOINT_URL), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION. Objects are fetched by a bounded
pool of threads, a window of them in flight at a time (memory does not grow with the table), each into a resume
folder as `<bucket>/<key>/<ETag>`, written under a temporary name and renamed only once whole: a killed download's
rerun fetches only the objects it lacks, or whose ETag or size the store now gives differently. A missing key or a
forbidden object is a row left out with its reason; a missing bucket, wrong keys or a store that does not answer is
one line naming the URL.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from transferlab.core.endpoints import redact
from transferlab.core.errors import DataError

SCHEME = "s3://"
ANY_URL = re.compile(r"^([a-z][a-z0-9+.\-]*)://", re.IGNORECASE)
FETCH_WORKERS = 16  # requests in flight: objects are small and the wait is the network's, not the CPU's
WINDOW = 4 * FETCH_WORKERS  # rows submitted ahead of the one being placed
MAX_NAME_BYTES = 255  # one part of a path, on every common file system
# Codes by which a store refuses the request's keys, not one object: the keys are wrong for every row
REFUSED_KEYS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
                "TokenRefreshRequired", "RequestTimeTooSkewed", "InvalidSecurity"}
# A file system that cannot give a file a second name there (another device, FAT, too many links)
NO_LINKS = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}
RESUMES = "; a rerun fetches only the objects still missing"
T, R = TypeVar("T"), TypeVar("R")


def is_url(name: str) -> bool:
    """Whether a file value is a URL (`s3://...`, `gs://...`) rather than a path."""
    return bool(ANY_URL.match(name))


def split_url(url: str) -> tuple[str, str]:
    """(bucket, key) of an `s3://bucket/key` URL."""
    bucket, _, key = url[len(SCHEME):].partition("/")
    return bucket, key


def url_problem(url: str) -> str | None:
    """Why a URL in the file column cannot name an object to fetch into the raw layout; None when it can.

    The key becomes the file's path under its class folder, so it must be a plain relative path."""
    scheme = ANY_URL.match(url).group(1)
    if scheme.lower() + "://" != SCHEME or not url.startswith(SCHEME):
        return f"a {scheme}:// URL; only {SCHEME} objects are fetched"
    bucket, key = split_url(url)
    if not bucket or not key:
        return "not an s3://bucket/key URL"
    if key.endswith("/"):
        return "names a folder of the store, not an object"
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "its key is not a plain path (an empty, '.' or '..' part)"
    if any(len(part.encode("utf-8")) > MAX_NAME_BYTES for part in parts):
        return f"a part of its key is longer than a file name may be ({MAX_NAME_BYTES} bytes)"
    return None


def fetch_objects(urls: Iterable[str], store: Path) -> Iterator[tuple[Path | None, str | None]]:
    """For each URL, in order: (the fetched file under `store`, None), or (None, why its row is left out).

    DataError, naming the URL, for what no row can overcome: a missing bucket, keys the store refuses, a store that
    does not answer."""
    fs, checked = _connected(), set()
    yield from in_parallel(lambda url: _fetch(fs, url, store, checked), urls)


def in_parallel(work: Callable[[T], R], items: Iterable[T], workers: int = FETCH_WORKERS) -> Iterator[R]:
    """`work(item)` for each item on `workers` threads, the results in the items' order, at most WINDOW items taken
    ahead of the one handed on: memory does not grow with the number of items."""
    pool = ThreadPoolExecutor(workers, thread_name_prefix="fetch-object")
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) >= WINDOW:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # after an error or Ctrl-C only the fetches in flight finish


def _filesystem():
    """s3fs, botocore reading the endpoint, keys and region from the environment; s3fs' short timeouts (5 s to
    connect, 15 s a read) and few retries: a store that does not answer is reported in seconds, not minutes."""
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False,
                           config_kwargs={"retries": {"max_attempts": 2}, "max_pool_connections": FETCH_WORKERS})
    fs.retries = 2  # s3fs' own retries around botocore's (5 by default, with back-off)
    return fs


def _connected():
    """The file system with its client made here, once, before the threads share it."""
    fs = _filesystem()
    try:
        fs.connect()
    except ValueError as exc:  # botocore's word for an endpoint that is not a URL
        raise DataError(f"the object store's endpoint: {_first_line(exc)}; check AWS_ENDPOINT_URL_S3 or "
                        f"AWS_ENDPOINT_URL") from None
    return fs


def _fetch(fs, url: str, store: Path, checked: set[str]) -> tuple[Path | None, str | None]:
    """Fetch one object into `store` unless a whole copy of it (same ETag, same size) is already there."""
    bucket, key = split_url(url)
    if bucket not in checked:
        _check_bucket(fs, bucket)
        checked.add(bucket)  # two threads may both check a bucket: harmless, and simpler than a lock
    try:
        info = fs.info(url)  # a HEAD request: whatever fails here is the store's answer
    except Exception as exc:  # noqa: BLE001 - sorted by _store_answer; a bug is raised again there
        return None, _store_answer(exc, url, fs)
    if info.get("type") != "file":
        return None, "a folder of the store (a prefix of other keys), not an object"
    folder = store / bucket / key
    fetched = folder / _tag(info)
    if fetched.is_file() and fetched.stat().st_size == info["size"]:
        return fetched, None
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{fetched.name}.tmp-{os.getpid()}"
    try:
        fs.get_file(url, str(partial))
    except Exception as exc:  # noqa: BLE001 - as above; the local disk's own errors (full, read-only) pass through
        if not _from_store(exc):
            raise
        return None, _store_answer(exc, url, fs)
    if (received := partial.stat().st_size) != info["size"]:
        partial.unlink()
        return None, f"changed in the store while it was fetched ({info['size']} bytes announced, {received} received)"
    os.replace(partial, fetched)
    return fetched, None


def _tag(info: dict) -> str:
    """The object's version as a file name: its ETag (quotes and other marks dropped), else its modification time."""
    tag = re.sub(r"[^A-Za-z0-9_-]", "", str(info.get("ETag") or ""))
    return tag or re.sub(r"[^0-9]", "", str(info.get("LastModified") or "")) or "unversioned"


def _check_bucket(fs, bucket: str) -> None:
    """List one key: the store answers, knows the bucket, and accepts the keys (keys that may read objects but
    not list them pass: each object then answers for itself)."""
    try:
        fs.call_s3("list_objects_v2", Bucket=bucket, MaxKeys=1)
    except Exception as exc:  # noqa: BLE001 - sorted by _store_answer
        _store_answer(exc, f"{SCHEME}{bucket}", fs)


def _store_answer(exc: Exception, url: str, fs) -> str:
    """The reason a row is left out for a missing or forbidden object. DataError naming `url` for an answer about
    the bucket or the keys, or a store that fails; anything else (a bug) is raised again as it is."""
    code = _code(exc)
    if code in REFUSED_KEYS:
        raise DataError(f"{url}: the object store at {_endpoint(fs)} refuses the keys ({code}); check "
                        f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") from None
    if code == "NoSuchBucket":
        raise DataError(f"{url}: no such bucket in the object store at {_endpoint(fs)}") from None
    if _no_keys(exc):
        raise DataError(f"{url}: no keys for the object store at {_endpoint(fs)}; set AWS_ACCESS_KEY_ID and "
                        f"AWS_SECRET_ACCESS_KEY") from None
    if isinstance(exc, FileNotFoundError):
        return "no such object in the store"
    if isinstance(exc, PermissionError):
        return f"no permission to read this object ({code or 'access denied'})"
    if _from_store(exc):
        raise DataError(f"{url}: the object store at {_endpoint(fs)} {_failure(exc)}; check AWS_ENDPOINT_URL_S3 or "
                        f"AWS_ENDPOINT_URL{RESUMES}") from None
    raise exc


def _failure(exc: BaseException) -> str:
    """What went wrong with the store, in a few words: silence, or its error."""
    import aiohttp
    from botocore.exceptions import ConnectionError as NoConnection

    if isinstance(exc, (NoConnection, aiohttp.ClientConnectionError, TimeoutError)):
        return f"does not answer ({type(exc).__name__})"
    return f"failed ({_code(exc) or type(exc).__name__}: {_first_line(exc)})"


def _no_keys(exc: BaseException) -> bool:
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError

    return isinstance(exc, (NoCredentialsError, PartialCredentialsError))


def _from_store(exc: BaseException) -> bool:
    """Whether an error is the store's answer or the network's, not the local disk's or a bug."""
    import aiohttp
    from botocore.exceptions import BotoCoreError

    return _code(exc) is not None or isinstance(exc, (BotoCoreError, aiohttp.ClientError, TimeoutError))


def _code(exc: BaseException) -> str | None:
    """The store's error code (NoSuchKey, AccessDenied, 403 ...) behind s3fs' translated exception."""
    response = getattr(exc.__cause__, "response", None) or getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code")


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:160]


def _endpoint(fs) -> str:
    """The endpoint botocore chose (from the environment or its config files), without any user information."""
    try:
        fs.connect()
        return redact(fs.s3.meta.endpoint_url)
    except Exception:  # noqa: BLE001 - only for a message: then the variables, as the user set them
        return redact(os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3")


def place(fetched: Path, destination: Path) -> None:
    """The fetched file at `destination` in the raw layout: a second name for the same bytes where the file system
    allows one (no copy; the resume folder is removed once the download is complete), else a copy."""
    try:
        os.link(fetched, destination)
    except OSError as exc:
        if exc.errno not in NO_LINKS:
            raise
        shutil.copyfile(fetched, destination)
