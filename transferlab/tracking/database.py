"""The local sqlite tracking store: made once under a lock, refused when corrupt, half-migrated or moved.

MLflow creates and migrates a fresh sqlite store on the first connection of whichever process comes first, with
no lock: two stages starting at once (two `dvc exp run --queue` workers, two clones on one machine, a Prefect
retry) ran the same alembic migrations side by side and left the database half-migrated (an `_alembic_tmp_*`
table, a revision short of the head), failing every later stage. Here the first check of a stage makes it whole
while holding a lock beside the database, so the stage's own connections find it complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from transferlab.core.errors import UserError

LEFTOVER_PREFIX = "_alembic_tmp_"  # alembic's copy of a table during a batch migration on SQLite
ARTIFACT_FOLDER = "mlartifacts"  # see store.local_artifact_root


@contextlib.contextmanager
def creation_lock(database: Path) -> Iterator[None]:
    """Held while a process looks at and makes the store; `<database>.lock` is kept (removing it would race). Where
    this process may not write beside an existing database (a read-only share), it cannot make or migrate it
    either: it only reads."""
    try:
        lock = open(database.with_name(database.name + ".lock"), "a")
    except OSError:  # permission denied, a read-only file system
        if not database.exists():
            raise
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _tables(database: Path) -> set[str]:
    """The tables of the database, read-only; a file that is not one is a user's one-line error."""
    try:
        with contextlib.closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)) as connection:
            return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{database}: the MLflow tracking database cannot be read ({exc}); restore it from a backup, "
                        f"move it aside to start a new one, or set MLFLOW_TRACKING_URI") from None


def _check_not_half_migrated(database: Path, tables: set[str]) -> None:
    leftovers = sorted(name for name in tables if name.startswith(LEFTOVER_PREFIX))
    if leftovers:
        drops = "; ".join(f"DROP TABLE {name}" for name in leftovers)
        raise UserError(f"{database}: the MLflow tracking database was left half-migrated (leftover "
                        f"{', '.join(leftovers)}: a migration that did not finish, such as two processes making it at "
                        f"once); copy it as a backup, then run `sqlite3 {database} '{drops}'` and "
                        f"`mlflow db upgrade sqlite:///{database}`")


def prepare_database(uri: str, artifact_root: Path) -> None:
    """The sqlite store of `uri` exists whole, made under the lock by the first process to get there; a corrupt or
    half-migrated one is a one-line error naming its fix. Seconds the first time (MLflow's import and migrations),
    milliseconds after (no MLflow)."""
    database = Path(uri.removeprefix("sqlite:///"))
    with creation_lock(database):
        tables = _tables(database) if database.exists() else set()
        _check_not_half_migrated(database, tables)
        if "alembic_version" not in tables:  # new, or empty: nothing has migrated it yet
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            # MLflow's own creation and migrations (and its Default experiment), its engine kept for this process
            SqlAlchemyStore(uri, artifact_root.resolve().as_uri())


def _local_path(location: str) -> Path | None:
    parts = urlsplit(location)
    return Path(unquote(parts.path)) if parts.scheme in ("", "file") else None


def check_artifact_location(database: Path, experiment: str, artifact_root: Path) -> None:
    """The experiment's artifacts go under this store's `artifact_root`. MLflow fixes an experiment's artifact
    folder when it is created, as an absolute path: after the project moved (or was copied with its database),
    every run would write into the old place, recreating it, or into the original's folder."""
    with contextlib.closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)) as connection:
        found = connection.execute("SELECT artifact_location FROM experiments WHERE name = ?", (experiment,)).fetchone()
    location = _local_path(found[0]) if found else None
    # a stage makes its experiment's folder <home>/mlartifacts, MLflow its Default's <home>/mlartifacts/<id>; a
    # folder the user chose for an experiment stays theirs
    ours = location and ARTIFACT_FOLDER in (location.name, location.parent.name)
    if ours and artifact_root.resolve() not in (location, location.parent):
        raise UserError(f"{database}: experiment {experiment!r} keeps its artifacts in {location}, outside this "
                        f"store's {artifact_root.resolve()} (the project was moved or copied after MLflow created the "
                        f"experiment, which fixes that folder); move the project back, or set mlflow.experiment in "
                        f"params.yaml to a new name, whose runs will log here")
