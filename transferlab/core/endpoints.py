"""Services the pipeline talks to (MLflow, Prefect): quick reachability checks and credential-free URIs."""

from __future__ import annotations

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
