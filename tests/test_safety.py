"""Every service the project starts or documents listens on 127.0.0.1 unless a user says otherwise,
and params carry no credentials."""

from __future__ import annotations

import re

from tests.conftest import PROJECT_ROOT
from transferlab.core.params import Params


def test_make_serve_binds_the_prefect_server_to_loopback():
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    starts = [line for line in makefile.splitlines() if "server start" in line]
    assert starts and all("--host 127.0.0.1" in line for line in starts)


def test_the_documented_servers_default_to_loopback():
    from mlflow.cli import server
    from prefect.settings import get_current_settings

    assert next(p.default for p in server.params if p.name == "host") == "127.0.0.1"  # mlflow server / mlflow ui
    assert get_current_settings().server.api.host == "127.0.0.1"  # prefect server start


def test_params_have_no_place_for_credentials():
    def keys(model, prefix=""):
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                yield from keys(annotation, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}"

    secret = re.compile(r"password|secret|token|credential|api_key|access_key", re.IGNORECASE)
    assert not [key for key in keys(Params) if secret.search(key)]
    assert not secret.search((PROJECT_ROOT / "params.yaml").read_text())
