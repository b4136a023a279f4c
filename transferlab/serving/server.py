"""`transferlab serve`: MLflow's own model server for a registered model, checked first so that a wrong name,
alias or port is one line here rather than a traceback from MLflow after it has started."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from transferlab.core.child_processes import ending_with_this_process, stop_group
from transferlab.core.endpoints import require_server
from transferlab.core.errors import UserError
from transferlab.core.redaction import scrub


def check_port_free(host: str, port: int) -> None:
    """--host names an address of this machine's resolver and nothing answers on --port there yet."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:  # `bad..host`: the resolver's error, or IDNA's for a label
        raise UserError(f"--host: {host!r} is not an address or a host name this machine resolves ({exc}); give "
                        f"an IP address such as 127.0.0.1 or 0.0.0.0") from None
    with socket.socket(family, kind, protocol) as probe:
        if probe.connect_ex(address) == 0:
            raise UserError(f"--port: {port} on {host} is taken (another server?); stop it or pass another --port")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def check_alias(uri: str, otherwise: str = "start the tracking server first") -> None:
    """`models:/<name>@<alias>` pointing nowhere is one line naming the newest version, its alias and why, and
    the --model that uses it (MLflow would say only "alias not found")."""
    import mlflow

    from transferlab.tracking.promotion import alias_problem

    require_server(mlflow.get_tracking_uri(), otherwise=otherwise)
    name, at, alias = uri.removeprefix("models:/").partition("@")
    if uri.startswith("models:/") and at and (problem := alias_problem(mlflow.MlflowClient(), name, alias)):
        raise UserError(f"--model: {uri}: {problem}")


def check_servable(uri: str) -> str:
    """The registered version behind `uri`, if it exists and is the image model; else one line that says why."""
    import mlflow
    from mlflow.exceptions import MlflowException

    check_alias(uri)
    try:
        info = mlflow.models.get_model_info(uri)
    except MlflowException as exc:
        raise UserError(f"--model: {uri}: {scrub(str(exc).splitlines()[0])} (run the pipeline, whose evaluate "
                        f"stage registers the model, or name another version)") from None
    if "python_function" not in info.flavors or "keras" in info.flavors:
        raise UserError(f"--model: {uri} was registered before models took image files (a Keras model of pixel "
                        f"tensors); run the evaluate stage again to register an image model")
    return info.model_uri


def serve_command(uri: str, host: str, port: int) -> list[str]:
    """`mlflow models serve` in this environment (its packages are the model's pinned requirements)."""
    mlflow = Path(sys.executable).with_name("mlflow")
    return [str(mlflow), "models", "serve", "-m", uri, "--env-manager", "local", "--host", host, "--port", str(port)]


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def served(uri: str, tracking_uri: str, start_timeout_s: float = 240) -> Iterator[str]:
    """`mlflow models serve` for `uri` on a free loopback port, until the block ends: its base URL. A server that
    exits or does not answer /ping in time is UserError with the end of its output."""
    import os
    import subprocess
    import tempfile
    import time
    import urllib.request

    port = free_loopback_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    with tempfile.TemporaryFile("w+") as output:  # a group of its own to stop, and an end if this process dies
        server = subprocess.Popen(serve_command(uri, "127.0.0.1", port), env=env, stdout=output,
                                  stderr=subprocess.STDOUT, start_new_session=True,
                                  preexec_fn=ending_with_this_process())
        try:
            deadline, url = time.monotonic() + start_timeout_s, f"http://127.0.0.1:{port}"
            while True:
                if server.poll() is not None:
                    output.seek(0)
                    tail = scrub(" | ".join(output.read().strip().splitlines()[-3:]))[-600:]
                    raise UserError(f"{uri}: the model server exited with code {server.returncode}: {tail}")
                try:
                    urllib.request.urlopen(f"{url}/ping", timeout=2).read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise UserError(f"{uri}: the model server did not answer /ping within {start_timeout_s} s")
                    time.sleep(0.5)
            yield url
        finally:
            stop_group(server, grace_s=60)
