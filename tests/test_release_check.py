"""The release checks against a served model, on a local HTTP endpoint that answers as MLflow's server does."""

import base64
import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from transferlab.serving.release_cases import Case
from transferlab.serving.release_check import ReleaseCheckFailed, check_cases, check_example, measure, mismatches

CASE = Case(b"\xff\xd8jpeg", {"cat": 0.7, "dog": 0.3})


def _answer(probabilities: dict) -> dict:
    ranked = sorted(probabilities.items(), key=lambda item: -item[1])
    return {"class": ranked[0][0], "probability": ranked[0][1], "top_classes": [n for n, _ in ranked],
            "top_probabilities": [p for _, p in ranked], "error": None}


def _error(message: str) -> dict:
    return {"class": None, "probability": None, "top_classes": [], "top_probabilities": [], "error": message}


def test_an_answer_matches_within_the_tolerance_in_every_class_whatever_the_order():
    assert mismatches([CASE], [_answer({"dog": 0.305, "cat": 0.695})], 0.01) == []
    [found] = mismatches([CASE], [_answer({"dog": 0.33, "cat": 0.67})], 0.01)
    assert found.startswith("image 0: a class probability differs by 0.03")
    [found] = mismatches([CASE], [_answer({"cat": 1.0})], 0.01)  # a class missing from the answer
    assert "differs by inf" in found
    assert mismatches([CASE], [_error("cannot decode")], 0.01) == ["image 0: cannot decode"]


@pytest.fixture
def served():
    """A stand-in for `mlflow models serve`: answers each base64 image with `answer`, or HTTP 500."""
    state = {"answer": _answer({"cat": 0.7, "dog": 0.3}), "status": 200, "bodies": [], "rows": None, "delay_s": 0.0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            time.sleep(state["delay_s"])
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state["bodies"].append(body)
            rows = body["dataframe_split"]["data"]
            payload = json.dumps({"predictions": [state["answer"]] * (state["rows"] or len(rows))}).encode()
            self.send_response(state["status"])
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            return None

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", state
    server.shutdown()


def test_cases_are_posted_as_base64_with_every_class_asked_for_and_a_difference_fails(served):
    url, state = served
    assert check_cases(url, [CASE, CASE], 0.01) == 0.0  # the largest difference seen
    [body] = state["bodies"]
    assert body["params"] == {"top_k": 2}
    assert [base64.b64decode(row[0]) for row in body["dataframe_split"]["data"]] == [CASE.image, CASE.image]
    state["answer"] = _answer({"cat": 0.2, "dog": 0.8})
    with pytest.raises(ReleaseCheckFailed, match="2 of 2 test images answered unlike evaluate"):
        check_cases(url, [CASE, CASE], 0.01)


def test_an_example_answered_with_an_error_or_a_server_error_fails(served):
    url, state = served
    example = json.dumps({"dataframe_split": {"columns": ["image"], "data": [["AAAA"]]}})
    check_example(url, example)
    state["answer"] = _error("decoder broken")
    with pytest.raises(ReleaseCheckFailed, match=r"example was not answered: \['decoder broken'\]"):
        check_example(url, example)
    state["status"] = 500
    with pytest.raises(ReleaseCheckFailed, match="answered HTTP 500"):
        check_example(url, example)


def test_measure_sends_every_request_and_times_each_one_whole(served):
    """Each request takes at least 20 ms: so does its latency, and 3 at a time make at most 150 a second."""
    url, state = served
    state["delay_s"] = 0.02
    timing = measure(url, CASE.image, concurrency=3, requests=12)
    assert len(state["bodies"]) == 12 and (timing.requests, timing.concurrency) == (12, 3)
    assert timing.p50_ms >= 20 and timing.per_second <= 3 / 0.02


@pytest.mark.parametrize(("settings", "message"), [({"concurrency": 0}, "concurrency: 0 must be at least 1"),
                                                   ({"requests": -1}, "requests: -1 must be at least 1"),
                                                   ({"tolerance": float("nan")}, "tolerance: nan must be a finite"),
                                                   ({"max_p95_ms": -5.0}, "max_p95_ms: -5.0 must be a finite")])
def test_release_settings_that_cannot_work_are_one_line(settings, message):
    from transferlab.core.errors import UserError
    from transferlab.serving.release import ReleaseSettings

    with pytest.raises(UserError, match=f"^{message}"):
        ReleaseSettings(**settings)


def test_a_damaged_cases_artifact_is_a_one_line_failure_not_a_crash(tmp_path):
    from transferlab.core.errors import UserError
    from transferlab.serving.release_cases import ARTIFACT, INDEX, load_cases

    class Client:  # MLflow's download_artifacts, answering with a folder whose index was cut short
        def download_artifacts(self, run_id, path, dst):
            folder = tmp_path / ARTIFACT
            folder.mkdir(exist_ok=True)
            (folder / INDEX).write_text('{"cases": [{"file": "0000.jpg", "probab', encoding="utf-8")
            return str(folder)

    with pytest.raises(UserError, match=rf"^run abc: {ARTIFACT}/{INDEX} is unreadable \(JSONDecodeError"):
        load_cases(Client(), "abc", tmp_path)


def test_announcing_to_a_prefect_server_that_does_not_answer_is_a_log_line_and_sends_nothing(monkeypatch, caplog):
    import prefect.events
    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.conftest import closed_port
    from transferlab.serving.release_events import announce_champion

    def sent(*args, **kwargs):  # the events worker would retry for its whole 30 s drain
        raise AssertionError("an event was emitted or drained towards a server that does not answer")

    monkeypatch.setattr(prefect.events, "emit_event", sent)
    monkeypatch.setattr(EventsWorker, "drain_all", sent)
    with temporary_settings({PREFECT_API_URL: f"http://me:secret@127.0.0.1:{closed_port()}/api"}):
        assert announce_champion("transferlab", "3", "2") is False
    assert "does not answer" in caplog.text and "python -m flows.release run --version 3" in caplog.text
    assert "secret" not in caplog.text


def test_a_served_model_that_answers_nan_does_not_pass_as_within_the_tolerance():
    """Issue 31: `nan > tolerance` is False, so NaN probabilities would have matched any answer."""
    [found] = mismatches([CASE], [_answer({"cat": float("nan"), "dog": float("nan")})], 0.01)
    assert found.startswith("image 0: a class probability differs by nan")


def test_a_server_that_answers_fewer_rows_than_it_was_sent_fails(served):
    """Issue 31: zip() compared only the rows that came back, so 1 answer for 2 images passed."""
    url, state = served
    state["rows"] = 1  # the stand-in answers this many rows whatever it was sent
    with pytest.raises(ReleaseCheckFailed, match="answered 1 row for 2 test images"):
        check_cases(url, [CASE, CASE], 0.01)


def test_a_server_error_while_measuring_fails_the_release(served):
    url, state = served
    state["status"] = 500
    with pytest.raises(ReleaseCheckFailed, match="answered HTTP 500"):
        measure(url, CASE.image, concurrency=2, requests=4)


def _check_release(url: str, monkeypatch, **settings):
    """`release.check` of version 1 against the stand-in, with evaluate's answer for CASE as its one test image."""
    from transferlab.serving import release

    class Client:
        def get_model_version(self, name, version):
            return type("Version", (), {"run_id": "run-1"})

    @contextmanager
    def stand_in(uri, tracking_uri):
        yield url

    monkeypatch.setattr(release, "load_cases", lambda client, run_id, folder: [CASE])
    monkeypatch.setattr(release, "model_files", lambda client, name, version, folder: folder)
    monkeypatch.setattr(release, "serving_input", lambda uri: None)
    monkeypatch.setattr(release, "served", stand_in)
    return release.check(Client(), "transferlab", "1", "sqlite:///unused.db",
                         release.ReleaseSettings(concurrency=2, requests=4, **settings))


def test_a_release_fails_when_the_served_model_answers_beyond_its_tolerance(served, monkeypatch):
    """A served model 0.5 away from evaluate's answer fails the release at the default tolerance of 0.01."""
    url, state = served
    assert _check_release(url, monkeypatch).difference == 0.0
    state["answer"] = _answer({"cat": 0.2, "dog": 0.8})
    with pytest.raises(ReleaseCheckFailed, match="answered unlike evaluate"):
        _check_release(url, monkeypatch)


def test_a_release_fails_when_its_p95_latency_is_above_max_p95_ms(served, monkeypatch):
    """A server that takes at least 50 ms a request is above a 20 ms limit, and within a 5 s one."""
    url, state = served
    state["delay_s"] = 0.05
    assert _check_release(url, monkeypatch, max_p95_ms=5000.0).p95_ms >= 50
    with pytest.raises(ReleaseCheckFailed, match=r"p95 latency \d+ ms is above max_p95_ms 20"):
        _check_release(url, monkeypatch, max_p95_ms=20.0)
