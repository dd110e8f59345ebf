"""Object storage on the Airflow side: one code path for ``file://`` and ``s3://`` stores.

Paths are Airflow ``ObjectStoragePath`` objects; ``s3://`` paths carry the project's AWS
connection, whose extra may hold an ``endpoint_url`` (a moto server in tests).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eksml.errors import ServiceError
from eksml.layout import ModelVersion
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


def version_at(uri: str, settings: Settings) -> ModelVersion:
    """The model version at ``uri`` (``s3://``, ``file://`` or an absolute path) in the configured store."""
    return ModelVersion(store_path(uri, settings))


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
    os.replace(_local_temp(path.path, body.encode()), path.path)


class PreconditionFailed(ServiceError):
    """A conditional write lost: the object exists (create) or changed since it was read (replace)."""


@dataclass(frozen=True)
class Versioned:
    """One whole version of an object and the tag a conditional replace must name."""

    body: bytes
    etag: str


def read_versioned(path: ObjectStoragePath) -> Versioned | None:
    """The object's bytes and ETag from one response, or None when it does not exist.

    On S3 this is a single GET (body and ETag of the same version), unlike s3fs's open(),
    which fails with ``FileExpired`` when the object is replaced between its HEAD and GET.
    """
    if is_local(path):
        return _local_read(path.path)
    from botocore.exceptions import ClientError

    try:
        reply = _s3_client(path.conn_id).get_object(Bucket=path.bucket, Key=path.key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    return Versioned(reply["Body"].read(), reply["ETag"])


def put_if_absent(path: ObjectStoragePath, body: bytes) -> str:
    """Create ``path`` only if no object is there (S3 ``If-None-Match: *``); return its ETag."""
    if is_local(path):
        return _local_create(path.path, body)
    return _s3_conditional_put(path, body, IfNoneMatch="*")


def put_if_match(path: ObjectStoragePath, body: bytes, etag: str) -> str:
    """Replace ``path`` only if it is still the version tagged ``etag`` (S3 ``If-Match``).

    ``body`` must differ from every earlier version of the object (the registry's pointer
    names a unique history entry), so that a tag never comes back.
    """
    if is_local(path):
        return _local_replace(path.path, body, etag)
    return _s3_conditional_put(path, body, IfMatch=etag)


@functools.lru_cache(maxsize=8)
def _s3_client_for(conn_id: str | None, _conn_env: str | None) -> Any:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=conn_id).get_conn()


def _s3_client(conn_id: str | None) -> Any:
    # Keyed by the connection's environment definition too, so a redefined connection is honoured.
    return _s3_client_for(conn_id, os.environ.get(f"AIRFLOW_CONN_{(conn_id or '').upper()}"))


def _s3_conditional_put(path: ObjectStoragePath, body: bytes, **condition: str) -> str:
    from botocore.exceptions import ClientError

    try:
        reply = _s3_client(path.conn_id).put_object(
            Bucket=path.bucket, Key=path.key, Body=body, ContentType="application/json", **condition
        )
    except ClientError as exc:
        error = exc.response.get("Error", {})
        # 412 when the condition fails; 409 when S3 sees a concurrent conditional write to the key.
        if error.get("Code") in ("PreconditionFailed", "ConditionalRequestConflict") or exc.response.get(
            "ResponseMetadata", {}
        ).get("HTTPStatusCode") in (409, 412):
            raise PreconditionFailed(f"{uri_of(path)}: {error.get('Message') or error.get('Code')}") from exc
        raise
    return reply["ETag"]


# --- local conditional writes ----------------------------------------------------------------
# The same semantics as S3's, without a lock: every replace first links its new version under
# ``.<name>.next/<etag being replaced>``, which only one writer can create. That link is the
# commit; the file itself is then renamed into place for plain readers. The successors form a
# chain, and a versioned read follows it to its end, so a writer that dies (or is delayed)
# between the link and the rename never hides or reverts a committed version.


def _etag(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _successors(name: str) -> str:
    head, tail = os.path.split(name)
    return os.path.join(head, f".{tail}.next")


def _local_read(name: str) -> Versioned | None:
    try:
        with open(name, "rb") as handle:
            body = handle.read()
    except FileNotFoundError:
        return None
    chain = _successors(name)
    for _ in range(100_000):
        try:
            with open(os.path.join(chain, _etag(body)), "rb") as handle:
                body = handle.read()
        except FileNotFoundError:
            return Versioned(body, _etag(body))
    raise RuntimeError(f"{name}: successor chain does not end")


def _local_temp(name: str, body: bytes) -> str:
    os.makedirs(os.path.dirname(name) or ".", exist_ok=True)
    tmp = os.path.join(os.path.dirname(name), f".{os.path.basename(name)}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # a failed write leaves no temp file behind
        raise
    return tmp


def _local_create(name: str, body: bytes) -> str:
    tmp = _local_temp(name, body)
    try:
        os.link(tmp, name)
    except FileExistsError as exc:
        raise PreconditionFailed(f"{name} exists") from exc
    finally:
        os.unlink(tmp)
    return _etag(body)


def _local_replace(name: str, body: bytes, etag: str) -> str:
    current = _local_read(name)
    if current is None or current.etag != etag:
        raise PreconditionFailed(f"{name} changed since it was read")
    chain = _successors(name)
    os.makedirs(chain, exist_ok=True)
    tmp = _local_temp(name, body)
    try:
        os.link(tmp, os.path.join(chain, etag))  # the commit: one successor per version
    except FileExistsError as exc:
        os.unlink(tmp)
        raise PreconditionFailed(f"{name} was replaced concurrently") from exc
    os.unlink(tmp)
    _publish(name)
    return _etag(body)


def _publish(name: str) -> None:
    """Rename the end of the chain into place; redo it if a delayed writer renamed an older one."""
    for _ in range(1000):
        latest = _local_read(name)
        with open(name, "rb") as handle:
            if latest is None or _etag(handle.read()) == latest.etag:
                return
        os.replace(_local_temp(name, latest.body), name)


def copy_tree(src: ObjectStoragePath, dst: ObjectStoragePath, *, last: tuple[str, ...] = ()) -> list[str]:
    """Copy every file under ``src`` to ``dst``; names in ``last`` are copied at the end."""
    files = sorted((p for p in src.rglob("*") if p.is_file()), key=lambda p: (p.name in last, str(p)))
    copied = []
    for file in files:
        rel = file.path[len(src.path.rstrip("/")) :].lstrip("/")  # relative_to() fails on s3 paths
        target = dst / rel
        if is_local(target):
            target.parent.mkdir(parents=True, exist_ok=True)
        file.copy(target)
        copied.append(rel)
    return copied


def remove_tree(root: ObjectStoragePath) -> int:
    """Delete every file under ``root`` (and, locally, its folders); return how many files went."""
    if not root.exists():
        return 0
    if is_local(root):
        import shutil

        count = sum(1 for p in root.rglob("*") if p.is_file())
        shutil.rmtree(root.path)
        return count
    files = [p for p in root.rglob("*") if p.is_file()]
    for file in files:
        file.unlink()
    return len(files)


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
