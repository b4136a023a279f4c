"""`transferlab stack up | status | down | env`: the team's services started, checked and stopped together, and a
clone pointed at them as one member."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from transferlab.core.errors import UserError
from transferlab.stack import object_store, orchestration_server, postgres, tracking_server
from transferlab.stack.daemons import await_ready, refuse_taken_ports, running_pid, start_daemon, stop_daemon
from transferlab.stack.layout import HOST, StackLayout, save_layout
from transferlab.stack.secrets import MEMBERS, Credentials, load_or_create, read_credentials, write_private

START_S = 240  # a first start migrates MLflow's and Prefect's databases: a minute or two on two busy cores


@dataclass(frozen=True)
class Daemon:
    """One of the stack's processes: how to start it and how to tell it is ours and answering."""

    name: str
    marker: Callable[[StackLayout], str]  # text of its command line, to tell it from a process that took its id
    start: Callable[[StackLayout, Credentials], tuple[list[str], dict[str, str]]]
    health: Callable[[StackLayout, Credentials], str | None]
    ports: Callable[[StackLayout], tuple[int, ...]]  # what it listens on: free before it starts


def _store_start(layout, credentials):
    return object_store.command(layout, credentials), dict(os.environ)


def _worker_start(layout, credentials):
    return orchestration_server.worker_command_and_env(layout, member_env(layout, credentials, "writer"))


def _worker_health(layout, credentials):
    return None if running_pid(layout.pid_file(orchestration_server.WORKER), "worker start") else "not running"


DAEMONS = (
    Daemon(object_store.SERVICE, lambda layout: f"-dir={layout.data(object_store.SERVICE)}", _store_start,
           object_store.health, lambda layout: (layout.ports.s3, layout.ports.seaweed_master,
                                                layout.ports.seaweed_volume, layout.ports.seaweed_filer)),
    Daemon(tracking_server.SERVICE, lambda layout: f"--port {layout.ports.mlflow}",
           tracking_server.command_and_env, lambda layout, _: tracking_server.health(layout),
           lambda layout: (layout.ports.mlflow,)),
    Daemon(orchestration_server.SERVICE, lambda layout: f"--port {layout.ports.prefect}",
           orchestration_server.server_command_and_env, lambda layout, _: orchestration_server.health(layout),
           lambda layout: (layout.ports.prefect,)),
    Daemon(orchestration_server.WORKER, lambda layout: f"--pool {orchestration_server.WORK_POOL}", _worker_start,
           _worker_health, lambda layout: ()),
)


@contextlib.contextmanager
def one_at_a_time(layout: StackLayout, action: str) -> Iterator[None]:
    """This stack to one `up` or `down` at a time: two `up`s of a new stack each made a database with its own
    password and id, and `down` could then stop neither. The OS drops the lock with its holder, a kill -9 included."""
    lock = layout.root / "run" / "stack.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"stack {action}: another `transferlab stack up` or `down` is working on {layout.root}; "
                            "wait for it to end") from None
        yield


def up(layout: StackLayout, experiment: str, model: str, say: Callable[[str], None] = print) -> None:
    """Start whatever of the stack is not running (data kept from the last `up`), then set up its members."""
    with one_at_a_time(layout, "up"):
        _up(layout, experiment, model, say)


def _up(layout: StackLayout, experiment: str, model: str, say: Callable[[str], None]) -> None:
    save_layout(layout)
    credentials = load_or_create(layout.credentials_file)
    if postgres.initialize(layout, credentials):
        say(f"stack: PostgreSQL's data folder made in {postgres.data_folder(layout)}")
    if not postgres.running(layout):
        refuse_taken_ports("postgres", HOST, (layout.ports.postgres,))
        postgres.start(layout)
    postgres.create_databases(layout, credentials)
    say(f"stack: postgres      127.0.0.1:{layout.ports.postgres} (databases {', '.join(postgres.DATABASES)})")
    for daemon in DAEMONS:
        _start(daemon, layout, credentials)
        if daemon.name == object_store.SERVICE:
            object_store.create_buckets(layout, credentials)
        elif daemon.name == tracking_server.SERVICE:
            tracking_server.set_up_members(layout, credentials, experiment, model)
        elif daemon.name == orchestration_server.SERVICE:
            orchestration_server.create_work_pool(layout)
        say(f"stack: {daemon.name:<13} {service_url(layout, daemon.name)}")
    say(f"stack: up; members {', '.join(MEMBERS)} (passwords in {layout.credentials_file}, never printed): "
        "`transferlab stack env --user writer` points this clone at it")


def _start(daemon: Daemon, layout: StackLayout, credentials: Credentials) -> None:
    pid_file = layout.pid_file(daemon.name)
    pid = running_pid(pid_file, daemon.marker(layout))
    if pid is None:
        refuse_taken_ports(daemon.name, HOST, daemon.ports(layout))
        argv, env = daemon.start(layout, credentials)
        pid = start_daemon(argv, env, layout.log(daemon.name), pid_file)
    await_ready(daemon.name, lambda: daemon.health(layout, credentials) is None, pid, layout.log(daemon.name),
                START_S, credentials.all_secrets())


def service_url(layout: StackLayout, name: str) -> str:
    return {object_store.SERVICE: layout.url("s3"), tracking_server.SERVICE: layout.url("mlflow"),
            orchestration_server.SERVICE: orchestration_server.api_url(layout),
            orchestration_server.WORKER: f"work pool {orchestration_server.WORK_POOL}",
            "postgres": f"127.0.0.1:{layout.ports.postgres}"}[name]


def status(layout: StackLayout) -> list[tuple[str, str, str]]:
    """(service, URL without secrets, "ok" or why not) for each service."""
    credentials = read_credentials(layout.credentials_file)
    rows = [("postgres", service_url(layout, "postgres"), postgres.health(layout, credentials) or "ok")]
    for daemon in DAEMONS:
        running = running_pid(layout.pid_file(daemon.name), daemon.marker(layout))
        problem = daemon.health(layout, credentials) if running else "not running"
        rows.append((daemon.name, service_url(layout, daemon.name), problem or "ok"))
    return rows


def down(layout: StackLayout, say: Callable[[str], None] = print) -> None:
    """Stop what `up` started, newest first; the data stays for the next `up`."""
    with one_at_a_time(layout, "down"):
        _down(layout, say)


def _down(layout: StackLayout, say: Callable[[str], None]) -> None:
    for daemon in reversed(DAEMONS):
        stopped = stop_daemon(layout.pid_file(daemon.name), daemon.marker(layout))
        say(f"stack: {daemon.name} {'stopped' if stopped else 'was not running'}")
    stopped = postgres.data_folder(layout).joinpath("PG_VERSION").is_file() and postgres.stop(layout)
    say(f"stack: postgres {'stopped' if stopped else 'was not running'}; the data stays in {layout.root}")


def member_env(layout: StackLayout, credentials: Credentials, user: str) -> dict[str, str]:
    """A member's environment: MLflow as that user, Prefect's API, and the object store with the member's key."""
    if user not in credentials.members:
        raise UserError(f"stack env --user {user}: not a member of this stack; members: {', '.join(MEMBERS)}")
    member = credentials.members[user]
    return {"MLFLOW_TRACKING_URI": layout.url("mlflow"), "MLFLOW_TRACKING_USERNAME": user,
            "MLFLOW_TRACKING_PASSWORD": member["mlflow_password"], **orchestration_server.client_env(layout),
            "AWS_ENDPOINT_URL_S3": layout.url("s3"), "AWS_ACCESS_KEY_ID": member["s3_access_key"],
            "AWS_SECRET_ACCESS_KEY": member["s3_secret_key"], "AWS_DEFAULT_REGION": "us-east-1"}


def write_member_env(layout: StackLayout, user: str) -> Path:
    """members/<user>.env (mode 600): `export` lines a shell sources."""
    env = member_env(layout, read_credentials(layout.credentials_file), user)
    path = layout.member_env_file(user)
    write_private(path, "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items()))
    return path


DVC_REMOTE = "team"


def configure_dvc_remote(layout: StackLayout, user: str, clone: Path) -> None:
    """The clone's default DVC remote: the stack's bucket and endpoint in .dvc/config (shareable), the member's key
    in .dvc/config.local only (git ignores it; mode 600)."""
    from dvc.repo import Repo

    member = read_credentials(layout.credentials_file).members[user]
    repo = Repo(str(clone))
    with repo.config.edit("repo") as config:
        config["remote"][DVC_REMOTE] = {"url": "s3://dvc/transferlab", "endpointurl": layout.url("s3")}
        config["core"]["remote"] = DVC_REMOTE
    with repo.config.edit("local") as config:
        config["remote"][DVC_REMOTE] = {"access_key_id": member["s3_access_key"],
                                        "secret_access_key": member["s3_secret_key"]}
    os.chmod(clone / ".dvc" / "config.local", 0o600)
