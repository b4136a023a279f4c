"""Services the pipeline talks to (MLflow, Prefect): quick reachability checks and credential-free URIs."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def redact(uri: str) -> str:
    """The URI without user name or password, for logs, tags and artifacts."""
    parts = urlsplit(uri)
    if not (parts.username or parts.password):
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, f"***@{netloc}", parts.path, parts.query, parts.fragment))


def unreachable_reason(uri: str, timeout_s: float = 3.0) -> str | None:
    """Why a TCP connection to an http(s) URI's host fails within `timeout_s`; None when it connects
    (or when the URI is not a network one: sqlite, file, databricks profiles ...)."""
    parts = urlsplit(uri)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        with socket.create_connection((parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme]), timeout=timeout_s):
            return None
    except OSError as exc:
        return exc.strerror or exc.__class__.__name__
