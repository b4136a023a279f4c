"""`transferlab doctor`: what this machine and configuration can run, and the fix for each problem found."""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from transferlab.core.backbones import spec_for
from transferlab.core.endpoints import redact, unreachable_reason
from transferlab.core.errors import UserError

MIN_FREE_GIB = 5.0  # Oxford-IIIT Pet raw + prepared + one feature cache + models, with room to spare
KERAS_WEIGHTS_HOST = "https://storage.googleapis.com"


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str = ""


def versions() -> Finding:
    names = ("tensorflow", "keras", "mlflow", "dvc", "prefect", "tensorflow-datasets")
    found = {name: _version(name) for name in names}
    missing = [name for name, version in found.items() if version is None]
    detail = f"Python {platform.python_version()}, " + ", ".join(f"{k} {v}" for k, v in found.items() if v)
    return Finding("versions", not missing, detail, f"pip install -e . (missing: {', '.join(missing)})" if missing else "")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def accelerators() -> Finding:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    build = tf.sysconfig.get_build_info()
    cuda = f"CUDA {build.get('cuda_version', '-')}, cuDNN {build.get('cudnn_version', '-')}" \
        if tf.test.is_built_with_cuda() else "a CPU-only TensorFlow build"
    detail = f"{len(gpus)} GPU(s) {[g.name for g in gpus]}; {cuda}"
    fix = "" if gpus else "none needed on CPU; for a GPU: make install-gpu (pip install -e '.[gpu]') and an NVIDIA driver"
    return Finding("accelerators", True, detail, fix)


def dataset(params, root: Path) -> Finding:
    data = params.data
    if data.source == "synthetic":
        return Finding("dataset", True, "synthetic: generated, nothing to fetch")
    if data.source == "folder":
        folder = (root / str(data.folder.root)).expanduser()
        if not folder.is_dir():
            return Finding("dataset", False, f"data.folder.root {folder} is not a folder",
                           "point data.folder.root at <class>/<image> folders or the extracted Oxford-IIIT archive")
        return Finding("dataset", True, f"folder {folder}")
    from transferlab.data.sources.tfds_source import builder_for, check_reachable

    builder = builder_for(data.tfds)
    try:
        check_reachable(data.tfds, dict(builder.url_infos or {}))
    except UserError as exc:
        return Finding("dataset", False, f"tfds {data.tfds.name}: {exc}", "offline: archives into data.tfds.manual_dir, or your own folder "
                       "(dvc exp run -S data.source=folder -S data.folder.root=<folder>), or `make demo`")
    where = f"manual_dir {data.tfds.manual_dir}" if data.tfds.manual_dir else "downloadable"
    return Finding("dataset", True, f"tfds {data.tfds.name}: {where}; kept in {data.tfds.data_dir}")


def weights(params, root: Path) -> list[Finding]:
    findings = []
    for name in params.compare.backbones:
        cfg = params.backbone_named(name)
        check = f"weights {name}"
        if cfg.weights == "none":
            findings.append(Finding(check, True, "none: random initialisation"))
        elif cfg.weights == "imagenet":
            cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
            cached = sorted(p.name for p in cache.glob(spec_for(name).keras_cache_pattern)) if cache.is_dir() else []
            reason = None if cached else unreachable_reason(KERAS_WEIGHTS_HOST)
            detail = f"imagenet: cached {cached}" if cached else f"imagenet: not cached in {cache}"
            findings.append(Finding(check, reason is None, detail + (f"; {KERAS_WEIGHTS_HOST}: {reason}" if reason else ""),
                                    "" if reason is None else "offline: set the weights to a local .h5 file path"))
        else:
            path = (root / cfg.weights).expanduser()
            findings.append(Finding(check, path.is_file(), f"file {path}",
                                    "" if path.is_file() else "the file is missing: fix the path or use imagenet"))
    return findings


def mlflow_endpoint(root: Path) -> Finding:
    from transferlab.tracking.store import tracking_uri

    uri = tracking_uri(root)
    reason = unreachable_reason(uri)
    if reason:
        return Finding("mlflow", False, f"{redact(uri)}: {reason}",
                       "start the server (mlflow server --host 127.0.0.1) or unset MLFLOW_TRACKING_URI for sqlite")
    return Finding("mlflow", True, redact(uri))


def prefect_endpoint() -> Finding:
    url = os.environ.get("PREFECT_API_URL", "")
    if not url:
        return Finding("prefect", True, "no PREFECT_API_URL: flows start a temporary local server",
                       "for schedules: make serve (a server on 127.0.0.1:4200)")
    reason = unreachable_reason(url)
    return Finding("prefect", reason is None, redact(url) + (f": {reason}" if reason else ""),
                   "start it: prefect server start --host 127.0.0.1, or unset PREFECT_API_URL" if reason else "")


def disk(root: Path) -> Finding:
    free = shutil.disk_usage(root).free / 2**30
    ok = free >= MIN_FREE_GIB
    return Finding("disk", ok, f"{free:.1f} GiB free at {root}",
                   "" if ok else f"free at least {MIN_FREE_GIB:.0f} GiB, or point paths.* and DVC's cache elsewhere")


def diagnose(params_file: Path) -> list[Finding]:
    from transferlab.core.params_loader import load_params

    root = Path(params_file).resolve().parent
    findings = [versions(), disk(root), mlflow_endpoint(root), prefect_endpoint()]
    try:
        params = load_params(params_file)
    except UserError as exc:
        return findings + [Finding("params", False, str(exc), f"fix {params_file}")]
    findings.append(Finding("params", True, f"{params_file} is valid"))
    checks: list[Callable[[], Finding | list[Finding]]] = [accelerators, lambda: dataset(params, root),
                                                           lambda: weights(params, root)]
    for check in checks:
        result = check()
        findings.extend(result if isinstance(result, list) else [result])
    return findings


def render(findings: list[Finding]) -> str:
    lines = []
    for finding in findings:
        lines.append(f"{'ok     ' if finding.ok else 'PROBLEM'} {finding.check:22s} {finding.detail}")
        if finding.fix and not finding.ok:
            lines.append(f"        {'':22s} fix: {finding.fix}")
    return "\n".join(lines)


def as_records(findings: list[Finding]) -> list[dict]:
    return [asdict(finding) for finding in findings]
