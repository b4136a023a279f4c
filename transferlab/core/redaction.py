"""Credentials never reach a terminal or a log: every line a stage or the CLI prints passes through `scrub`.

The secrets are what the environment holds (the user and password of any URL in an environment variable such as
MLFLOW_TRACKING_URI or PREFECT_API_URL, and variables named like *PASSWORD*, *TOKEN*, *SECRET*, *API_KEY*), plus
the user information of any URL in the text itself. Wrapping stdout and stderr covers what no call site controls:
tracebacks (chained ones too), warnings, third-party loggers, progress bars.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator, Mapping
from typing import TextIO
from urllib.parse import unquote

MASK = "***"
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|API_KEY|ACCESS_KEY|CREDENTIAL", re.IGNORECASE)
# In free text: the user information up to the URL's last `@` (a password may hold one), never past a `/`
URL_WITH_USER = re.compile(r"\b([a-z][a-z0-9+.\-]*://)([^\s/'\"]+)@", re.IGNORECASE)
# In a value known to be one URL (a variable, a setting): also past a `/`, `?` or `#` that a password holds
# unencoded, which ends the host for a URL parser (`http://u:p/w@host` has the host `u` and the port `p`)
URI_USER_INFO = re.compile(r"\b([a-z][a-z0-9+.\-]*://)([^\s'\"]+)@", re.IGNORECASE)
MIN_SECRET_LENGTH = 3  # shorter values would mask ordinary words


def secrets_in(environment: Mapping[str, str]) -> list[str]:
    """Every credential the environment holds, longest first (a password containing another is masked whole)."""
    found: set[str] = set()
    for name, value in environment.items():
        if SECRET_NAME.search(name):
            found.add(value)
        for match in URI_USER_INFO.finditer(value):
            user, _, password = match.group(2).partition(":")
            for part in (user, password):
                if part:
                    found.update({part, unquote(part)})
    return sorted((s for s in found if len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def scrub(text: str, secrets: list[str] | None = None) -> str:
    """`text` with every credential replaced by ***."""
    text = URL_WITH_USER.sub(rf"\1{MASK}@", text)
    for secret in secrets_in(os.environ) if secrets is None else secrets:
        text = text.replace(secret, MASK)
    return text


def scrubbed(values: Mapping[str, object]) -> dict[str, str]:
    """Each value as text with every credential replaced by ***: for MLflow params and tags, which outlive logs."""
    secrets = secrets_in(os.environ)
    return {key: scrub(str(value), secrets) for key, value in values.items()}


class RedactingStream:
    """A text stream that scrubs what is written to it and passes everything else to the stream it wraps."""

    def __init__(self, stream: TextIO):
        self.wrapped = stream

    def write(self, text: str) -> int:
        self.wrapped.write(scrub(text))
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str):
        return getattr(self.wrapped, name)


@contextlib.contextmanager
def redacted_output() -> Iterator[None]:
    """Scrub stdout and stderr for the duration (the whole life of a stage or CLI process)."""
    saved = sys.stdout, sys.stderr
    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout = RedactingStream(sys.stdout)
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
