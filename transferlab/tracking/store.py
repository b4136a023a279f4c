"""Where runs are tracked (`MLFLOW_TRACKING_URI`, else sqlite:///mlflow.db in the repo) and whether that store opens."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from transferlab.core.endpoints import redact, require_server
from transferlab.core.errors import UserError

# What MLflow's tracking and registry stores accept (a bare path is a local file store).
TRACKING_SCHEMES = {"", "file", "http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks",
                    "databricks-uc", "uc"}


def tracking_home(project_root: Path) -> Path:
    """Where the default backend lives. A queued or --temp `dvc exp run` works in a throw-away copy of the
    repo; DVC then sets DVC_ROOT to the repo itself, where the runs belong (dvclive reads it the same way)."""
    return Path(os.environ.get("DVC_ROOT") or project_root).resolve()


def tracking_uri(project_root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{tracking_home(project_root) / 'mlflow.db'}"


def local_artifact_root(uri: str) -> Path | None:
    """Where a local sqlite backend keeps its artifacts: beside the database, never in the current directory
    (MLflow's own default, ./mlruns). A tracking server decides its own (None)."""
    prefix = "sqlite:///"
    return Path(uri.removeprefix(prefix)).resolve().parent / "mlartifacts" if uri.startswith(prefix) else None


def check_tracking_store(project_root: Path) -> None:
    """The store the stages will log to opens: a sqlite file is a database, a server answers (seconds, no MLflow)."""
    uri = tracking_uri(project_root)
    scheme = uri.split(":", 1)[0] if ":" in uri else ""
    if scheme not in TRACKING_SCHEMES:
        raise UserError(f"MLFLOW_TRACKING_URI {redact(uri)}: MLflow cannot track into a {scheme!r} URI; use "
                        f"http(s)://host:port for a server, sqlite:///path.db, or unset it for sqlite:///mlflow.db")
    if not uri.startswith("sqlite:///"):
        require_server(uri)
        return
    database = Path(uri.removeprefix("sqlite:///"))
    if not database.exists():
        return  # MLflow creates it on the first run
    try:
        with contextlib.closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)) as connection:
            connection.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{database}: the MLflow tracking database cannot be read ({exc}); restore it from a backup, "
                        f"move it aside to start a new one, or set MLFLOW_TRACKING_URI") from None
