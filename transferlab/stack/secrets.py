"""The stack's credentials: generated once, kept in one file that only its owner may read, never printed.

What a member's clone needs (their MLflow password, the object store's keys) is written into files of the same
mode (`members/<user>.env`, DVC's `.dvc/config.local`), never onto a command line, a log, a tag or a report."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from transferlab.core.errors import UserError

MEMBERS = ("writer", "reader")  # the roles the stack creates: EDIT on the experiment and model, and READ only
PRIVATE = 0o600


@dataclass(frozen=True)
class Credentials:
    postgres_password: str
    s3_access_key: str
    s3_secret_key: str
    mlflow_admin_password: str
    mlflow_flask_secret: str
    members: dict[str, dict[str, str]]  # user: its MLflow password and its own object-store key

    @classmethod
    def generated(cls) -> Credentials:
        return cls(postgres_password=_token(), s3_access_key=_access_key(), s3_secret_key=_token(30),
                   mlflow_admin_password=_token(), mlflow_flask_secret=_token(32),
                   members={user: {"mlflow_password": _token(), "s3_access_key": _access_key(),
                                   "s3_secret_key": _token(30)} for user in MEMBERS})

    def all_secrets(self) -> list[str]:
        """Every secret value, for scrubbing what the stack's services print."""
        values = [self.postgres_password, self.s3_secret_key, self.mlflow_admin_password, self.mlflow_flask_secret]
        values += [member[key] for member in self.members.values() for key in ("mlflow_password", "s3_secret_key")]
        return sorted(values, key=len, reverse=True)


def _access_key() -> str:
    return "TL" + secrets.token_hex(9).upper()


def _token(length: int = 24) -> str:
    return secrets.token_urlsafe(length)  # URL-safe: it goes into a database URI unquoted


def write_private(path: Path, text: str) -> None:
    """`text` into `path`, readable by its owner only from the first byte on (created with that mode, then renamed
    over the old file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temp, path)


def load_or_create(path: Path) -> Credentials:
    """The stack's credentials, generated into `path` the first time."""
    if not path.exists():
        created = Credentials.generated()
        write_private(path, json.dumps(asdict(created), indent=2))
        return created
    return read_credentials(path)


def read_credentials(path: Path) -> Credentials:
    if not path.is_file():
        raise UserError(f"{path}: no stack credentials here; start the stack with `transferlab stack up`")
    if path.stat().st_mode & 0o077:
        raise UserError(f"{path}: readable by others (mode {path.stat().st_mode & 0o777:o}); run `chmod 600 {path}`")
    try:
        return Credentials(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path}: not the stack's credentials file ({type(exc).__name__}); restore it from a "
                        "backup (the services' passwords are in it)") from None
