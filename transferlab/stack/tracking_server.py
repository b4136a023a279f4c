"""MLflow's tracking server for the stack: runs and the model registry in PostgreSQL, artifacts proxied to the
object store, and MLflow's basic-auth app (its users and permissions in PostgreSQL too).

Every secret reaches the server through its environment or a file only the owner reads, never its command line
(which every account of the machine can see in `ps`)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from transferlab.stack import postgres
from transferlab.stack.layout import HOST, StackLayout
from transferlab.stack.secrets import MEMBERS, Credentials, write_private

SERVICE = "mlflow"
ADMIN = "admin"
# What each member may do on the project's experiment and registered model (MLflow's permission names)
ROLE_PERMISSIONS = {"writer": "EDIT", "reader": "READ"}


def auth_config(layout: StackLayout, credentials: Credentials) -> str:
    """basic_auth.ini: users in PostgreSQL; whoever is not granted more may only read."""
    return "\n".join([
        "[mlflow]", "default_permission = READ",
        f"database_uri = {postgres.uri(layout, credentials, 'mlflow_auth')}",
        f"admin_username = {ADMIN}", "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
        "grant_default_workspace_access = false", ""])


def command_and_env(layout: StackLayout, credentials: Credentials) -> tuple[list[str], dict[str, str]]:
    config = layout.root / "mlflow-basic-auth.ini"
    write_private(config, auth_config(layout, credentials))
    env = {**os.environ, **s3_client_env(layout, credentials),
           "MLFLOW_BACKEND_STORE_URI": postgres.uri(layout, credentials, "mlflow"),
           "MLFLOW_ARTIFACTS_DESTINATION": "s3://mlflow/artifacts", "MLFLOW_AUTH_CONFIG_PATH": str(config),
           "MLFLOW_AUTH_ADMIN_PASSWORD": credentials.mlflow_admin_password,
           "MLFLOW_FLASK_SERVER_SECRET_KEY": credentials.mlflow_flask_secret,
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    argv = [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth", "--host", HOST,
            "--port", str(layout.ports.mlflow), "--workers", "2"]
    return argv, env


def s3_client_env(layout: StackLayout, credentials: Credentials) -> dict[str, str]:
    """What an S3 client (boto3, s3fs, MLflow's artifact store) needs to reach the stack's object store."""
    return {"MLFLOW_S3_ENDPOINT_URL": layout.url("s3"), "AWS_ENDPOINT_URL_S3": layout.url("s3"),
            "AWS_ACCESS_KEY_ID": credentials.s3_access_key, "AWS_SECRET_ACCESS_KEY": credentials.s3_secret_key,
            "AWS_DEFAULT_REGION": "us-east-1"}


def health(layout: StackLayout) -> str | None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{layout.url('mlflow')}/health", timeout=5) as response:
            return None if response.status == 200 else f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))[:200]


@contextlib.contextmanager
def as_user(user: str, password: str) -> Iterator[None]:
    """MLflow's client calls inside the block authenticate as `user` (MLflow reads these variables per request)."""
    kept = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ.update(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password)
    try:
        yield
    finally:
        for name, value in kept.items():
            os.environ.pop(name) if value is None else os.environ.__setitem__(name, value)


def set_up_members(layout: StackLayout, credentials: Credentials, experiment: str, model: str) -> None:
    """The members' accounts, the project's experiment and registered model, and each member's permission on both
    (created once; granting again is harmless)."""
    import warnings

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    with warnings.catch_warnings():  # the server's own modules warn of their Starlette import: not this client's
        warnings.simplefilter("ignore")
        from mlflow.server import get_app_client

    uri = layout.url("mlflow")
    with as_user(ADMIN, credentials.mlflow_admin_password):
        auth = get_app_client("basic-auth", tracking_uri=uri)
        client = MlflowClient(uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        with contextlib.suppress(MlflowException):  # it exists
            client.create_registered_model(model)
        for user in MEMBERS:
            with contextlib.suppress(MlflowException):  # it exists
                auth.create_user(user, credentials.members[user]["mlflow_password"])
            for kind, resource in (("experiment", experiment_id), ("registered_model", model)):
                if auth.get_user_permission(user, kind, resource).permission != ROLE_PERMISSIONS[user]:
                    # granted once; a grant an admin changed since is theirs to keep (MLflow refuses a second)
                    with contextlib.suppress(MlflowException):
                        auth.grant_user_permission(user, kind, resource, ROLE_PERMISSIONS[user])
