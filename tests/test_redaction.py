"""No credential in any line a stage or the CLI prints: messages, warnings, chained tracebacks (issue 14, finding 5)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import PROJECT_ROOT, closed_port
from transferlab.core.redaction import RedactingStream, scrub, secrets_in

PASSWORD = "hunter2-Pa55"


def test_secrets_come_from_urls_and_secret_named_variables():
    env = {"MLFLOW_TRACKING_URI": f"https://alice:{PASSWORD}@mlflow.example.com", "PREFECT_API_KEY": "pnu_abcdef",
           "PATH": "/usr/bin", "PREFECT_API_URL": "http://tok%40en@prefect:4200/api"}
    found = secrets_in(env)
    assert {PASSWORD, "alice", "pnu_abcdef", "tok%40en", "tok@en"} <= set(found) and "/usr/bin" not in found
    text = f"POST https://alice:{PASSWORD}@mlflow.example.com/api failed; retry with {PASSWORD} and tok@en"
    assert scrub(text, found) == "POST https://***@mlflow.example.com/api failed; retry with *** and ***"


def test_a_password_with_a_bracket_is_masked_and_breaks_no_line():
    """A `[` in the user information made urlsplit raise 'Invalid IPv6 URL' on every line the redaction wrapped."""
    env = {"MLFLOW_TRACKING_URI": "http://alice:pa[ss@mlflow.example.com", "OTHER": "http://[::1"}
    found = secrets_in(env)
    assert {"alice", "pa[ss"} <= set(found)
    assert scrub("retry as alice with pa[ss", found) == "retry as *** with ***"


# One variable per pattern of SECRET_NAME, each name matching that pattern alone, so dropping any one turns it red.
SECRET_VARIABLES = {"PASSWORD": "DB_PASSWORD", "TOKEN": "HF_TOKEN", "SECRET": "CLIENT_SECRET",
                    "API_KEY": "OPENAI_API_KEY", "ACCESS_KEY": "AWS_ACCESS_KEY_ID",
                    "CREDENTIAL": "GOOGLE_APPLICATION_CREDENTIALS", "token (any case)": "github_token"}


@pytest.mark.parametrize("name", SECRET_VARIABLES.values(), ids=SECRET_VARIABLES.keys())
def test_the_value_of_every_secret_named_variable_is_masked(monkeypatch, name):
    value = f"value-of-{name.lower()}-9f3k"
    env = {name: value, "HOME": "/home/alice", "LANG": "C.UTF-8"}
    assert secrets_in(env) == [value]  # that variable's value, and no other variable's
    assert scrub(f"{name}={value} HOME=/home/alice", secrets_in(env)) == f"{name}=*** HOME=/home/alice"
    monkeypatch.setenv(name, value)  # and in what a stage prints, with the process environment as it is
    assert value not in scrub(f"connecting with {value}")


def test_a_stream_scrubs_every_write(monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    stream = RedactingStream(sys.stdout)
    stream.write(f"password is {PASSWORD}\n")
    stream.writelines([f"again {PASSWORD}\n"])
    assert capsys.readouterr().out == "password is ***\nagain ***\n"


def test_a_bug_keeps_its_chained_traceback_without_the_password(tmp_path):
    """A stage's bug prints its traceback (the cause chain included) through the scrubbing stream."""
    uri = f"http://alice:{PASSWORD}@127.0.0.1:{closed_port()}"
    script = textwrap.dedent(f'''
        from transferlab.stage_runner import main_for

        def body(context):
            try:
                raise ConnectionError("cannot reach {uri}/api/2.0/mlflow/runs/create")
            except ConnectionError as exc:
                raise RuntimeError("logging failed for {uri} with password {PASSWORD}") from exc

        main_for("boom", body, [])
    ''')
    (tmp_path / "params.yaml").write_text("{}\n")
    result = subprocess.run([sys.executable, "-c", script, "--no-track"], cwd=tmp_path, capture_output=True,
                            text=True, env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": "/usr/bin:/bin",
                                            "MLFLOW_TRACKING_URI": uri})
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" in output and "direct cause" in output
    assert "RuntimeError: logging failed for http://***@127.0.0.1" in output
    assert PASSWORD not in output and "alice" not in output


def test_a_password_holding_url_characters_is_masked_whole():
    """Hostile round of issue 42: `u:p/w@host` gave no secret (the parser's host was `u`), so `p/w` was printed
    in lines that held it alone; `p@ss@host` in text showed `ss@host`."""
    env = {"MLFLOW_TRACKING_URI": "http://alice:pa/ss#w?rd@mlflow.example.com"}
    assert set(secrets_in(env)) == {"alice", "pa/ss#w?rd"}
    assert scrub("login http://alice:p@ss-word@host:5000/x", []) == "login http://***@host:5000/x"
