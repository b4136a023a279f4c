"""Services the pipeline talks to (MLflow, Prefect, Ray): quick reachability checks and credential-free URIs."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
# A tracking server that dies mid-stage costs seconds, not MLflow's default of 7 retries x 120 s.
MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
                        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def redact(uri: str) -> str:
    """The URI without user name or password, for logs, tags and artifacts."""
    parts = urlsplit(uri)
    if not (parts.username or parts.password):
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, f"***@{netloc}", parts.path, parts.query, parts.fragment))


def unreachable_reason(uri: str, timeout_s: float = 3.0) -> str | None:
    """Why an http(s) URI's server does not answer an HTTP request within `timeout_s`; None when it answers
    with any status (or when the URI is not a network one: sqlite, file, databricks profiles ...).

    A request, not only a connection: a server that accepts connections and never replies (a hung process, a
    socket nobody reads) would otherwise pass here and then hang the stage in MLflow's own minutes-long retries."""
    import http.client

    parts = urlsplit(uri)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    connection_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_type(parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme], timeout=timeout_s)
    try:
        connection.request("HEAD", f"{parts.path.rstrip('/')}/health")
        connection.getresponse()
        return None
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except (OSError, http.client.HTTPException) as exc:
        return getattr(exc, "strerror", None) or exc.__class__.__name__
    finally:
        connection.close()


def unanswered_port(address: str, default_port: int, timeout_s: float = 5.0) -> str | None:
    """Why nothing accepts a TCP connection at `address` (`scheme://host:port` or `host:port`); None when something
    does, or when the address names no host (Ray's `auto`, `local`)."""
    import socket

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port or default_port
    except ValueError as exc:  # a port that is not a number
        return str(exc)
    if not host or host in ("auto", "local"):
        return None
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except OSError as exc:
        return exc.strerror or exc.__class__.__name__


def unanswered_grpc(address: str, default_port: int, timeout_s: float = 5.0) -> str | None:
    """Why no gRPC server answers at `address` within `timeout_s` (Ray's GCS and client ports are gRPC); None when
    one does, or when the address names no host. The HTTP/2 handshake, as Ray's own client waits for it
    (`grpc.channel_ready_future`), not only a connection: a port that accepts and never answers passes that and
    then holds Ray's connect for minutes."""
    if reason := unanswered_port(address, default_port, timeout_s):
        return reason
    import grpc

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if not parts.hostname or parts.hostname in ("auto", "local"):
        return None
    target = f"{parts.hostname}:{parts.port or default_port}"
    secure = parts.scheme == "rays"  # Ray client over TLS
    channel = grpc.secure_channel(target, grpc.ssl_channel_credentials()) if secure else grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
        return None
    except grpc.FutureTimeoutError:
        return f"it accepts connections but gives no gRPC answer within {timeout_s:g} s"
    finally:
        channel.close()


def require_server(uri: str, otherwise: str = "run the stage with --no-track") -> None:
    """Stop in seconds, before any work, when an http(s) MLflow tracking server does not answer; bound MLflow's
    own retries for the rest of the process (unless the user set them)."""
    import os

    from transferlab.core.errors import UserError

    for name, value in MLFLOW_HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    reason = unreachable_reason(uri)
    if reason:
        raise UserError(f"MLFLOW_TRACKING_URI {redact(uri)}: no MLflow server answers ({reason}); start it, "
                        f"unset MLFLOW_TRACKING_URI to use sqlite:///mlflow.db, or {otherwise}")
