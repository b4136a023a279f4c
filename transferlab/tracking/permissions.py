"""What this process's MLflow account may do on a tracking server with MLflow's auth app: a stage that would
write runs (or register versions) where the account may only read stops before any work, in one line."""

from __future__ import annotations

from urllib.parse import urlsplit

from transferlab.core.endpoints import DEFAULT_PORTS, redact
from transferlab.core.errors import UserError

PERMISSION_PROBE = "/api/3.0/mlflow/users/permissions/get"  # the effective permission, defaults included
WRITES = ("EDIT", "MANAGE")  # MLflow's permissions that may create runs and model versions


def effective_permission(uri: str, user: str, kind: str, resource: str) -> str | None:
    """MLflow's resolved permission of `user` on one resource (`kind`: experiment, registered_model); None where the
    server has no auth app (nothing to check) or does not say."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    response = http_request(get_default_host_creds(uri), PERMISSION_PROBE, "GET", max_retries=0, timeout=15,
                            raise_on_status=False,
                            params={"username": user, "resource_type": kind, "resource_id": resource})
    if not response.ok:
        return None
    try:
        return str(response.json()["permission"])
    except (ValueError, KeyError, TypeError):
        return None


def check_may_write(uri: str, experiment: str, registered_model: str | None = None) -> None:
    """UserError naming the missing permission when the account may only read the experiment or the model."""
    import mlflow
    from mlflow.utils.credentials import get_default_host_creds

    if urlsplit(uri).scheme not in DEFAULT_PORTS:
        return
    user = get_default_host_creds(uri).username
    if not user:
        return  # no account: a server without auth (require_server refused a server that wants one)
    found = mlflow.MlflowClient(uri).get_experiment_by_name(experiment)
    wanted = [("experiment", found.experiment_id, f"experiment {experiment!r}")] if found else []
    if registered_model:
        wanted.append(("registered_model", registered_model, f"registered model {registered_model!r}"))
    for kind, resource, named in wanted:
        permission = effective_permission(uri, user, kind, resource)
        if permission is not None and permission not in WRITES:
            raise UserError(f"MLflow user {user!r} has {permission} on {named} at {redact(uri)}; this stage writes "
                            f"to it and needs EDIT: ask an admin of that server to grant it, or run the stage "
                            f"with --no-track")
