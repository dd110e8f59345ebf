"""Object-storage access for training code: the same calls for local paths, file:// and s3://.

Uses fsspec (s3fs for s3://). An S3-compatible endpoint (a moto server in tests, MinIO...) is
taken from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import fsspec


def _storage_options(uri: str) -> dict[str, Any]:
    if uri.startswith("s3://"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            return {"client_kwargs": {"endpoint_url": endpoint}}
    return {}


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem serving ``uri`` and the path inside it."""
    fs, path = fsspec.core.url_to_fs(uri, **_storage_options(uri))
    return fs, path


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocols


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.exists(path)


def open_uri(uri: str, mode: str = "rb"):
    """Open one object for reading or writing."""
    fs, path = filesystem(uri)
    if "w" in mode and _is_local(fs):
        fs.makedirs(fs._parent(path), exist_ok=True)
    return fs.open(path, mode)


def read_json(uri: str) -> Any:
    with open_uri(uri, "rb") as handle:
        return json.loads(handle.read().decode())


def write_json(uri: str, payload: Any) -> None:
    """Write ``payload`` as JSON; readers never see a half-written file.

    An S3 PUT replaces the object at once; a local file is written beside and renamed over it.
    """
    data = json.dumps(payload, indent=2, sort_keys=True).encode()
    fs, path = filesystem(uri)
    if not _is_local(fs):
        with fs.open(path, "wb") as handle:
            handle.write(data)
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, target)


def remove(uri: str) -> bool:
    """Delete one object if it exists; return whether it did."""
    fs, path = filesystem(uri)
    if not fs.exists(path):
        return False
    fs.rm_file(path)
    return True


def upload_dir(local_dir: str | os.PathLike, uri: str, *, last: tuple[str, ...] = ()) -> list[str]:
    """Copy every file under ``local_dir`` to ``uri``; files named in ``last`` are copied at the end.

    Writing ``metrics.json`` last means its presence marks a complete upload.
    """
    root = Path(local_dir)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(root).as_posix() in last)
    fs, base = filesystem(uri)
    written = []
    for file in files:
        rel = file.relative_to(root).as_posix()
        target = f"{base.rstrip('/')}/{rel}"
        if _is_local(fs):
            fs.makedirs(fs._parent(target), exist_ok=True)
        fs.put_file(str(file), target)
        written.append(rel)
    return written


def download_dir(uri: str, local_dir: str | os.PathLike) -> Path:
    """Copy every object under ``uri`` into ``local_dir``."""
    fs, base = filesystem(uri)
    dest = Path(local_dir)
    dest.mkdir(parents=True, exist_ok=True)
    base = base.rstrip("/")
    for path in fs.find(base):
        rel = path[len(base) :].lstrip("/")
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(path, str(target))
    return dest
