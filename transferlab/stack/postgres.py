"""PostgreSQL for the stack: the machine's own server binaries (initdb, pg_ctl) on a data folder of the stack.

PostgreSQL refuses to run as root: under root the binaries run as the `postgres` account, whose own home then holds
the data folder and its log (root's folders, such as a stack under /root, are closed to that account). One
superuser (`transferlab`) with a generated password, scram-sha-256 on 127.0.0.1 only, and one database per
service."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

from transferlab.core.errors import UserError
from transferlab.stack.layout import HOST, StackLayout
from transferlab.stack.secrets import Credentials

SUPERUSER = "transferlab"
DATABASES = ("mlflow", "mlflow_auth", "prefect")
BIN_ENV = "TRANSFERLAB_PG_BIN"


def server_binaries(env=os.environ) -> Path:
    """The folder of initdb and pg_ctl: TRANSFERLAB_PG_BIN, PATH, or Debian's /usr/lib/postgresql/<n>/bin."""
    candidates = [env.get(BIN_ENV, "")]
    found = shutil.which("pg_ctl", path=env.get("PATH"))
    candidates += [str(Path(found).parent)] if found else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    for folder in filter(None, candidates):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    raise UserError("PostgreSQL's server programs (initdb, pg_ctl) were not found; install them (Debian: "
                    f"apt install postgresql) or set {BIN_ENV} to their folder")


def _as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def data_folder(layout: StackLayout) -> Path:
    """The database's folder: in the stack, or under root in the postgres account's home, one per stack (its id)."""
    if os.geteuid() != 0:
        return layout.data("postgres")
    import pwd

    home = Path(pwd.getpwnam("postgres").pw_dir)
    return home / "transferlab-stacks" / layout.stack_id / "data"


def log_file(layout: StackLayout) -> Path:
    return data_folder(layout).parent / "postgres.log" if os.geteuid() == 0 else layout.log("postgres")


def _owned_folder(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")


def initialize(layout: StackLayout, credentials: Credentials) -> bool:
    """The data folder made by initdb the first time; False when it exists already."""
    data = data_folder(layout)
    if (data / "PG_VERSION").is_file():
        return False
    for folder in (data.parent.parent, data.parent, data):  # under root: the postgres account's own
        _owned_folder(folder)
    password_file = data.parent / ".pwfile"
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(credentials.postgres_password)
    if os.geteuid() == 0:
        shutil.chown(password_file, "postgres", "postgres")
    try:
        _run([str(server_binaries() / "initdb"), "-D", str(data), "-U", SUPERUSER, f"--pwfile={password_file}",
              "-A", "scram-sha-256", "-E", "UTF8"], "initdb")
    finally:
        password_file.unlink(missing_ok=True)
    return True


def start(layout: StackLayout) -> None:
    data = data_folder(layout)
    # TCP on loopback only; no Unix socket (its folder's path length is limited, /var/run/postgresql is root's)
    options = f"-c listen_addresses={HOST} -p {layout.ports.postgres} -c unix_socket_directories=''"
    _run([str(server_binaries() / "pg_ctl"), "-D", str(data), "-l", str(log_file(layout)), "-o", options,
          "-w", "-t", "60", "start"], "pg_ctl start", log=log_file(layout))


def stop(layout: StackLayout) -> bool:
    data = data_folder(layout)
    if not running(layout):
        return False
    _run([str(server_binaries() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], "pg_ctl stop")
    return True


def running(layout: StackLayout) -> bool:
    return (data_folder(layout) / "postmaster.pid").is_file() and subprocess.run(
        _as_owner([str(server_binaries() / "pg_ctl"), "-D", str(data_folder(layout)), "status"]),
        capture_output=True).returncode == 0


def _run(argv: list[str], what: str, log: Path | None = None) -> None:
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            log.touch()
            shutil.chown(log, "postgres", "postgres")
    done = subprocess.run(_as_owner(argv), capture_output=True, text=True)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise UserError(f"PostgreSQL's {what} failed ({said[-1][:200] if said else f'exit {done.returncode}'})"
                        + (f"; see {log}" if log else ""))


def uri(layout: StackLayout, credentials: Credentials, database: str, driver: str = "postgresql") -> str:
    """A SQLAlchemy URI of one of the stack's databases (`driver`: postgresql, postgresql+asyncpg)."""
    return f"{driver}://{SUPERUSER}:{credentials.postgres_password}@{HOST}:{layout.ports.postgres}/{database}"


def create_databases(layout: StackLayout, credentials: Credentials) -> None:
    """The services' databases, each created once."""
    import psycopg

    connection = psycopg.connect(host=HOST, port=layout.ports.postgres, user=SUPERUSER,
                                 password=credentials.postgres_password, dbname="postgres", connect_timeout=10,
                                 autocommit=True)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT datname FROM pg_database")
            present = {row[0] for row in cursor.fetchall()}
            for name in DATABASES:
                if name not in present:
                    cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()


def health(layout: StackLayout, credentials: Credentials) -> str | None:
    """Why the database does not take a login; None when it does."""
    import psycopg

    try:
        psycopg.connect(host=HOST, port=layout.ports.postgres, user=SUPERUSER, password=credentials.postgres_password,
                        dbname="postgres", connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        return str(exc).strip().splitlines()[0][:200]
    return None
