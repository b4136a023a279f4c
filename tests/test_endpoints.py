"""Credential-free URIs and quick reachability checks."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import closed_port
from transferlab.core.endpoints import redact, require_server, unreachable_reason
from transferlab.core.errors import UserError


@pytest.mark.parametrize(("uri", "shown"), [
    ("https://alice:s3cret@mlflow.example.com:5000/x", "https://***@mlflow.example.com:5000/x"),
    ("http://token@host/api", "http://***@host/api"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
])
def test_redact_hides_user_and_password_only(uri, shown):
    assert redact(uri) == shown


def test_a_closed_port_is_one_bounded_connection_attempt(monkeypatch):
    attempts, connect = [], socket.create_connection

    def recording(address, timeout=None, *args, **kwargs):
        attempts.append((address, timeout))
        return connect(address, timeout, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", recording)
    port = closed_port()
    assert unreachable_reason(f"http://127.0.0.1:{port}") == "Connection refused"
    assert attempts == [(("127.0.0.1", port), 3.0)]  # one try, never longer than its timeout: no retries


def test_a_server_that_accepts_but_never_answers_is_unreachable_in_seconds():
    """Issue 14, finding 11: a listening socket that reads nothing once hung `download` for minutes."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        reason = unreachable_reason(f"http://127.0.0.1:{server.getsockname()[1]}", timeout_s=0.5)
    assert reason == "no answer within 0.5 s"  # it gave up on its own timeout (a hang would hit pytest-timeout)


def test_an_answering_server_and_local_backends_are_fine():
    import http.server
    import threading

    class Quiet(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(404)  # any answer counts: the server is there
            self.end_headers()

        def log_message(self, *args):
            return

    server = http.server.HTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert unreachable_reason(f"http://127.0.0.1:{server.server_port}/prefix") is None
    finally:
        server.shutdown()
    assert unreachable_reason("sqlite:///mlflow.db") is None and unreachable_reason("file:///tmp/mlruns") is None


MALFORMED = {"http://[::1": "not a valid URL (Invalid IPv6 URL)",
             "http://alice:hunter2-Pa55@127.0.0.1:notaport": "not a valid URL (Port could not be cast",
             "foo://x": "MLflow cannot track into a 'foo' URI"}


@pytest.mark.parametrize("uri", MALFORMED)
def test_a_tracking_uri_mlflow_cannot_use_is_one_line_without_its_password(uri):
    """Issue 42: `http://[::1` and `http://127.0.0.1:notaport` were ValueError tracebacks (serve, predict, doctor,
    compare), `foo://x` an MLflow traceback in serve and predict."""
    with pytest.raises(UserError) as refused:
        require_server(uri, otherwise="give --model a local model.keras")
    message = str(refused.value)
    assert message.startswith("MLFLOW_TRACKING_URI ") and MALFORMED[uri] in message
    assert "hunter2" not in message and "\n" not in message
    assert "hunter2" not in redact(uri)
    if uri != "foo://x":  # the doctor and the flow's Prefect check get the reason, not a ValueError
        assert unreachable_reason(uri).startswith("not a valid URL (")


UNENCODED = ("http://alice:hun/ter2@127.0.0.1:5000", "http://alice:hun#ter2@127.0.0.1:5000",
             "http://alice:hun?ter2@127.0.0.1:5000", "http://alice:hun@ter2@127.0.0.1:5000")


@pytest.mark.parametrize("uri", UNENCODED)
def test_a_password_with_unencoded_url_characters_is_never_shown(uri):
    """Hostile round of issue 42: `transferlab compare --tracking-uri http://u:p/w@host` printed the URI whole (a
    `/`, `?` or `#` ends the host for a parser, so the password was not taken for one), and the parser's message
    quoted its first part as the port."""
    assert "hun" not in redact(uri) and redact(uri).endswith("***@127.0.0.1:5000")
    if "@ter2" in uri:  # an `@` in the password: a valid URL, its host the text after the last `@`
        return
    with pytest.raises(UserError) as refused:
        require_server(uri)
    assert "hun" not in str(refused.value) and "percent-encode" in str(refused.value)


def _answering_every_path(status: int, body: bytes, content_type: str):
    """A web server (not MLflow) that gives every request the same answer."""
    import http.server
    import threading

    class Same(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = _answer

        def log_message(self, *args):
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Same)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize(("status", "body", "content_type", "said"), [
    (200, b"<html>sign in</html>", "text/html", "is not MLflow's JSON: it is not an MLflow tracking server"),
    (200, b"[]", "application/json", "is not MLflow's JSON"),
    (500, b"Internal Server Error", "text/plain", "the server fails (HTTP 500"),
])
def test_a_server_that_is_not_a_working_mlflow_stops_the_check(status, body, content_type, said):
    """Hostile round of issue 42: a web page answering every path with 200 (another service on the port, a
    proxy's login page) passed the check, and `transferlab repro -f download` ended in MLflow's traceback ("the
    response body was not in a valid JSON format") after DVC had removed data/raw."""
    server = _answering_every_path(status, body, content_type)
    try:
        with pytest.raises(UserError) as refused:
            require_server(f"http://alice:hunter2-Pa55@127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
    assert said in str(refused.value) and "hunter2" not in str(refused.value)


@pytest.mark.parametrize("path", ["", "{tmp}/", "{tmp}", "{tmp}/my%20store.db", "{tmp}/mlflow.db?timeout=20"])
def test_a_sqlite_uri_naming_no_file_as_written_is_one_line_and_makes_nothing(tmp_path, path):
    """Hostile round of issue 42: MLFLOW_TRACKING_URI=sqlite:/// was a ValueError traceback in the store's lock
    (no file name), and sqlite:///…/my%20store.db an sqlite3 traceback after SQLAlchemy had made `my store.db`."""
    uri = f"sqlite:///{path.format(tmp=tmp_path)}"
    with pytest.raises(UserError) as refused:
        require_server(uri)
    assert str(refused.value).startswith(f"MLFLOW_TRACKING_URI {uri}: ") and "\n" not in str(refused.value)
    assert "backup" not in str(refused.value)  # a folder named as the file read as a corrupt store
    assert list(tmp_path.iterdir()) == []
