"""Services the pipeline talks to (MLflow, Prefect, Ray): quick reachability checks and credential-free URIs."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from transferlab.core.redaction import MASK, URI_USER_INFO, scrub

DEFAULT_PORTS = {"http": 80, "https": 443}
# A tracking server that dies mid-stage costs seconds, not MLflow's default of 7 retries x 120 s.
MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
                        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
# What MLflow's tracking and registry stores accept (a bare path is a local file store).
TRACKING_SCHEMES = {"", "file", "http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks",
                    "databricks-uc", "uc"}
SQLITE = "sqlite:///"
# A request only a client MLflow's server lets in can make: a server with `--app-name basic-auth` answers 401 to it
# without valid credentials (its /health answers anyone).
AUTHENTICATED_PROBE = "/api/2.0/mlflow/experiments/search"
CREDENTIALS_FIX = {401: "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) to an "
                        "account of that server",
                   403: "ask the server's admin for permission to read and edit its experiments"}


def redact(uri: str) -> str:
    """The URI without user name or password, for logs, tags and artifacts (a malformed one too: a password holding
    an unencoded `/`, `?` or `#` is masked whole, up to the last `@`)."""
    return URI_USER_INFO.sub(rf"\1{MASK}@", uri)


def malformed_reason(uri: str) -> str | None:
    """Why `uri` is not a URL a client can connect to (None: it is, or it names no network host)."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - parsing the port is what raises for `host:notaport`
    except ValueError as exc:
        if _password_ends_host(uri):
            return (f"not a valid URL (a '/', '?' or '#' in its user information {MASK} ends the host; "
                    "percent-encode them in the password: %2F, %3F, %23)")
        return f"not a valid URL ({exc})"
    if parts.scheme in DEFAULT_PORTS and not parts.hostname:
        return "not a valid URL (no host)"
    return None


def _password_ends_host(uri: str) -> bool:
    """`u:p/w@host`: a `/`, `?` or `#` in the password ends the host for a parser, which then quotes `p` as the
    port in its message."""
    return bool(URI_USER_INFO.match(uri)) and "@" not in re.split(r"[/?#]", uri.split("://", 1)[1], maxsplit=1)[0]


def tracking_uri_problem(uri: str) -> str | None:
    """Why MLflow cannot track into `uri` as it stands, said before MLflow tries: a malformed URL, a scheme it has no
    store for, a sqlite database in a folder that does not exist (MLflow would create the folders, so a typo would
    start an empty store somewhere unexpected)."""
    if reason := malformed_reason(uri):
        return reason
    scheme = uri.split(":", 1)[0] if ":" in uri else ""
    if scheme not in TRACKING_SCHEMES:
        return (f"MLflow cannot track into a {scheme!r} URI; use http(s)://host:port for a server, sqlite:///path.db, "
                f"or unset it for sqlite:///mlflow.db")
    if uri.startswith(SQLITE) and (reason := _sqlite_path_problem(uri.removeprefix(SQLITE))):
        return reason
    folder = Path(uri.removeprefix(SQLITE)).parent
    if uri.startswith(SQLITE) and not folder.is_dir():
        return f"the folder {folder} does not exist; create it, or correct the path (MLflow would create it silently)"
    return None


def _sqlite_path_problem(path: str) -> str | None:
    """Why the path of a sqlite:/// URI is not the database file's name as it stands: the store is made and checked
    here from the path as written, while SQLAlchemy decodes %-escapes and a ?query (each was a traceback)."""
    if not path or path.endswith("/") or Path(path).is_dir():
        return "names no database file; e.g. sqlite:///mlflow.db, or sqlite:////absolute/path/mlflow.db"
    if "?" in path or unquote(path) != path:
        return "write the database file's path as it is, without %-escapes or a ?query"
    return None


def unreachable_reason(uri: str, timeout_s: float = 3.0) -> str | None:
    """Why an http(s) URI's server does not answer an HTTP request within `timeout_s`; None when it answers
    with any status (or when the URI is not a network one: sqlite, file, databricks profiles ...).

    A request, not only a connection: a server that accepts connections and never replies (a hung process, a
    socket nobody reads) would otherwise pass here and then hang the stage in MLflow's own minutes-long retries."""
    import http.client

    if reason := malformed_reason(uri):
        return reason
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

    try:
        parts = urlsplit(address if "://" in address else f"tcp://{address}")
        host, port = parts.hostname, parts.port or default_port
    except ValueError as exc:  # a port that is not a number, an unclosed `[`
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


def refused_reason(uri: str, timeout_s: float = 15.0) -> str | None:
    """Why an answering MLflow server does not serve an authenticated request from this process, with the fix
    (401: no or wrong credentials, 403: an account without permission, 404: not an MLflow tracking server); None
    when it does. MLflow's own request function sends it, with what every later call of this process sends:
    MLFLOW_TRACKING_USERNAME/PASSWORD or _TOKEN, the URL's user information, an auth plugin, the TLS settings."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(get_default_host_creds(uri), AUTHENTICATED_PROBE, "GET", params={"max_results": 1},
                                max_retries=0, timeout=timeout_s, raise_on_status=False)
    except MlflowException as exc:  # its message holds the request's URL, credentials included
        return f"MLflow's request to it failed ({scrub(str(exc).splitlines()[0])[:300]}); check the URI"
    if response.ok:
        return None if _mlflow_answer(response) else (
            f"it answers GET {AUTHENTICATED_PROBE} with {response.headers.get('Content-Type') or 'a body'} that "
            "is not MLflow's JSON: it is not an MLflow tracking server (another service on that port, a proxy's "
            "login page?); check the URI")
    if response.status_code >= 500:
        return (f"the server fails (HTTP {response.status_code} {response.reason}) on GET {AUTHENTICATED_PROBE}; "
                "see its log (its database or artifact store may be down)")
    fix = CREDENTIALS_FIX.get(response.status_code, f"check that it names an MLflow tracking server (GET "
                                                    f"{AUTHENTICATED_PROBE} failed)")
    return f"the server refuses this client (HTTP {response.status_code} {response.reason}); {fix}"


def _mlflow_answer(response) -> bool:
    """Whether a successful response is MLflow's: a JSON object (a web page answering every path with 200 would
    pass the check and fail the stage's first MLflow call, after DVC removed the stage's outputs)."""
    try:
        return isinstance(response.json(), dict)
    except ValueError:  # requests' JSONDecodeError
        return False


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
    """Stop in seconds, before any work, when MLflow cannot track into `uri`: not a tracking URI it takes (see
    `tracking_uri_problem`), an http(s) server that does not answer, or one that refuses this process's credentials
    (it would fail the first call after the stage's outputs are gone). Bounds MLflow's own retries for the rest of
    the process (unless the user set them)."""
    import os

    from transferlab.core.errors import UserError

    if problem := tracking_uri_problem(uri):
        raise UserError(f"MLFLOW_TRACKING_URI {redact(uri)}: {problem}")
    if urlsplit(uri).scheme not in DEFAULT_PORTS:
        return
    for name, value in MLFLOW_HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    if reason := unreachable_reason(uri):
        raise UserError(f"MLFLOW_TRACKING_URI {redact(uri)}: no MLflow server answers ({reason}); start it, "
                        f"unset MLFLOW_TRACKING_URI to use sqlite:///mlflow.db, or {otherwise}")
    if refused := refused_reason(uri):
        raise UserError(f"MLFLOW_TRACKING_URI {redact(uri)}: {refused}, or {otherwise}")
