"""Object storage on the Airflow side: one code path for ``file://`` and ``s3://`` stores.

Paths are Airflow ``ObjectStoragePath`` objects; ``s3://`` paths carry the project's AWS
connection, whose extra may hold an ``endpoint_url`` (a moto server in tests).
"""

from __future__ import annotations

import json
import os
import uuid
from typing import TYPE_CHECKING, Any

from eksml.settings import Settings

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath


def store_path(uri: str, settings: Settings) -> ObjectStoragePath:
    """An ``ObjectStoragePath`` for ``uri``, authenticated with the project's AWS connection."""
    from airflow.sdk import ObjectStoragePath

    if uri.startswith("s3://"):
        return ObjectStoragePath(uri, conn_id=settings.aws_conn_id)
    if uri.startswith("/"):
        uri = "file://" + uri
    return ObjectStoragePath(uri)


def uri_of(path: ObjectStoragePath) -> str:
    """The plain URI of ``path`` (no connection id), as workloads and metadata use it."""
    if is_local(path):
        return "file://" + path.path
    return f"{path.protocol}://{path.path}"


def is_local(path: ObjectStoragePath) -> bool:
    return path.protocol in ("file", "local", "")


def read_json(path: ObjectStoragePath) -> Any:
    return json.loads(path.read_text())


def write_json_atomic(path: ObjectStoragePath, payload: Any) -> None:
    """Replace ``path`` so that readers see the old or the new document, never a torn one.

    A single PUT is atomic on S3; on a local disk we write a sibling and rename it.
    """
    body = json.dumps(payload, indent=2, sort_keys=True, default=str)
    if not is_local(path):
        path.write_text(body)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    tmp.write_text(body)
    os.replace(tmp.path, path.path)


def copy_tree(src: ObjectStoragePath, dst: ObjectStoragePath, *, last: tuple[str, ...] = ()) -> list[str]:
    """Copy every file under ``src`` to ``dst``; names in ``last`` are copied at the end."""
    files = sorted((p for p in src.rglob("*") if p.is_file()), key=lambda p: (p.name in last, str(p)))
    copied = []
    for file in files:
        rel = file.path[len(src.path.rstrip("/")):].lstrip("/")  # relative_to() fails on s3 paths
        target = dst / rel
        if is_local(target):
            target.parent.mkdir(parents=True, exist_ok=True)
        file.copy(target)
        copied.append(rel)
    return copied


def workload_env(settings: Settings) -> dict[str, str]:
    """Environment a local workload needs to reach an ``s3://`` store.

    In the cluster, pods get S3 access from their IRSA service account; locally the process
    receives the credentials and endpoint of the Airflow AWS connection. Never logged.
    """
    if not settings.store_uri.startswith("s3://"):
        return {}
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    hook = AwsBaseHook(aws_conn_id=settings.aws_conn_id, client_type="s3")
    creds = hook.get_credentials()
    env = {"AWS_DEFAULT_REGION": hook.region_name or settings.region}
    if creds.access_key:
        env["AWS_ACCESS_KEY_ID"] = creds.access_key
        env["AWS_SECRET_ACCESS_KEY"] = creds.secret_key
    if creds.token:
        env["AWS_SESSION_TOKEN"] = creds.token
    endpoint = hook.conn_config.endpoint_url
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    return env
