"""What a release checks on a served model: it starts, it answers the registered input example, it gives evaluate's
answers for evaluate's images, and how fast it answers at a fixed concurrency. Plain HTTP against MLflow's server."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from transferlab.core.wording import plural
from transferlab.serving.release_cases import Case

REQUEST_TIMEOUT_S = 120


class ReleaseCheckFailed(Exception):
    """One line saying which check the served model failed."""


@dataclass(frozen=True)
class Timing:
    p50_ms: float
    p95_ms: float
    per_second: float
    requests: int
    concurrency: int
    difference: float | None = None  # largest class-probability difference from evaluate's answers

    def metrics(self) -> dict[str, float]:
        figures = {"latency_p50_ms": self.p50_ms, "latency_p95_ms": self.p95_ms, "requests_per_second": self.per_second}
        return figures | ({"max_probability_difference": self.difference} if self.difference is not None else {})


def image_body(images: Sequence[bytes]) -> dict:
    """MLflow's `dataframe_split` input: one base64 `image` per row (the model's signature)."""
    return {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(i).decode()] for i in images]}}


def post(url: str, body: dict | str) -> list[dict]:
    """The `predictions` the server gives for a JSON body; a refusal or a dead server is ReleaseCheckFailed."""
    data = (body if isinstance(body, str) else json.dumps(body)).encode()
    request = urllib.request.Request(f"{url}/invocations", data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return json.loads(response.read())["predictions"]
    except urllib.error.HTTPError as exc:
        raise ReleaseCheckFailed(f"the served model answered HTTP {exc.code}: {exc.read()[:300]!r}") from None
    except OSError as exc:
        raise ReleaseCheckFailed(f"the served model did not answer: {exc}") from None


def check_example(url: str, serving_input: str) -> None:
    """The registered input example (MLflow's serving_input_example.json) is answered without an error."""
    answers = post(url, serving_input)
    failed = [answer.get("error") for answer in answers if answer.get("error")]
    if not answers or failed:
        raise ReleaseCheckFailed(f"the registered input example was not answered: {failed[:1] or 'no rows'}")


def difference(case: Case, answer: dict) -> float:
    """The largest difference of a class probability between a served answer and evaluate's (inf: not comparable)."""
    served = dict(zip(answer["top_classes"], answer["top_probabilities"]))
    if answer.get("error") or set(served) != set(case.probabilities):
        return float("inf")
    return max(abs(served[name] - p) for name, p in case.probabilities.items())


def mismatches(cases: Sequence[Case], answers: Sequence[dict], tolerance: float) -> list[str]:
    """Where the served answers differ from evaluate's by more than `tolerance` in some class's probability."""
    found = []
    for number, (case, answer) in enumerate(zip(cases, answers)):
        if answer.get("error"):
            found.append(f"image {number}: {answer['error']}")
        elif not (worst := difference(case, answer)) <= tolerance:  # a NaN answer is a mismatch too
            found.append(f"image {number}: a class probability differs by {worst:.4g} from evaluate's "
                         f"(tolerance {tolerance})")
    return found


def check_cases(url: str, cases: Sequence[Case], tolerance: float) -> float | None:
    """Every case answered as evaluate answered it (all classes are asked for, so every probability compares);
    the largest difference seen, None without cases."""
    if not cases:
        return None
    body = {**image_body([case.image for case in cases]), "params": {"top_k": len(cases[0].probabilities)}}
    answers = post(url, body)
    if len(answers) != len(cases):  # zip would compare only the rows that came back
        raise ReleaseCheckFailed(f"the served model answered {plural(len(answers), 'row')} for "
                                 f"{plural(len(cases), 'test image')}")
    found = mismatches(cases, answers, tolerance)
    if found:
        raise ReleaseCheckFailed(f"{len(found)} of {len(cases)} test images answered unlike evaluate: {found[0]}")
    return max(difference(case, answer) for case, answer in zip(cases, answers))


def measure(url: str, image: bytes, concurrency: int, requests: int) -> Timing:
    """Latency percentiles and throughput of `requests` one-image requests, `concurrency` at a time."""
    import numpy as np

    body = image_body([image])

    def timed(_: int) -> float:
        start = time.perf_counter()
        post(url, body)
        return (time.perf_counter() - start) * 1000

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(timed, range(requests)))
    wall = time.perf_counter() - start
    p50, p95 = np.percentile(latencies, [50, 95])
    return Timing(float(p50), float(p95), requests / wall, requests, concurrency)
