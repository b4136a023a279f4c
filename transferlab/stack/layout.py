"""Where the stack keeps its data, logs, process ids and settings, and the ports its services listen on."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from transferlab.core.atomic import atomic_write_text

STACK_DIR_ENV = "TRANSFERLAB_STACK_DIR"
HOST = "127.0.0.1"  # every service listens on loopback only: a team puts a TLS proxy in front (README)


def default_stack_dir(env=os.environ) -> Path:
    """TRANSFERLAB_STACK_DIR, else $XDG_DATA_HOME/transferlab/stack (~/.local/share/...): one stack per machine
    account, whichever clone starts it, so that every clone there points at the same services."""
    if env.get(STACK_DIR_ENV):
        return Path(env[STACK_DIR_ENV]).expanduser().resolve()
    data_home = Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return (data_home / "transferlab" / "stack").resolve()


@dataclass(frozen=True)
class Ports:
    """Defaults away from each tool's own (5000, 4200, 5432, 8333), which one person's tools may hold."""

    postgres: int = 15432
    s3: int = 18333
    seaweed_master: int = 19333
    seaweed_volume: int = 18080
    seaweed_filer: int = 18888
    mlflow: int = 15000
    prefect: int = 14200

    def shifted(self, offset: int) -> Ports:
        return Ports(**{name: port + offset for name, port in asdict(self).items()})


@dataclass(frozen=True)
class StackLayout:
    root: Path
    ports: Ports = field(default_factory=Ports)
    # Names what the stack keeps outside its folder (a root-run PostgreSQL's data): a new stack in a folder used
    # before gets new data, never the old stack's database with its other password
    stack_id: str = field(default_factory=lambda: __import__("uuid").uuid4().hex[:16])

    @property
    def settings_file(self) -> Path:
        return self.root / "stack.json"

    @property
    def credentials_file(self) -> Path:
        return self.root / "credentials.json"

    def data(self, service: str) -> Path:
        return self.root / "data" / service

    def log(self, service: str) -> Path:
        return self.root / "logs" / f"{service}.log"

    def pid_file(self, service: str) -> Path:
        return self.root / "run" / f"{service}.pid"

    def member_env_file(self, user: str) -> Path:
        return self.root / "members" / f"{user}.env"

    def url(self, service: str) -> str:
        return f"http://{HOST}:{getattr(self.ports, service)}"


def load_layout(root: Path, port_offset: int | None = None) -> StackLayout:
    """The stack in `root` with the ports its first `up` chose (stack.json); a new stack takes the default ports,
    shifted by `port_offset`. Another offset for an existing stack is refused: its clients know its ports."""
    from transferlab.core.errors import UserError

    if root.joinpath("stack.json").is_file():
        saved = json.loads(root.joinpath("stack.json").read_text(encoding="utf-8"))
        ports = Ports(**saved["ports"])
        if port_offset is not None and ports != Ports().shifted(port_offset):
            raise UserError(f"{root}: this stack's ports were set when it was first started; --port-offset "
                            f"{port_offset} would move them (run `transferlab stack down`, then remove the folder "
                            "for a new stack)")
        return StackLayout(root, ports, saved["id"])
    return StackLayout(root, Ports().shifted(port_offset or 0))


def save_layout(layout: StackLayout) -> None:
    layout.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(layout.settings_file, json.dumps({"id": layout.stack_id, "ports": asdict(layout.ports)},
                                                       indent=2))
