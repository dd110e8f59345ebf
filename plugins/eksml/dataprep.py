"""Validate the Fashion-MNIST IDX files and version them in the data store by data interval."""

from __future__ import annotations

import gzip
import hashlib
import logging
import struct
import zlib
from typing import TYPE_CHECKING, Any

from eksml.storage import read_json, uri_of, write_json_atomic

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

#: file name -> (IDX rank, expected magic)
IDX_FILES: dict[str, tuple[int, int]] = {
    "train-images-idx3-ubyte.gz": (3, 2051),
    "train-labels-idx1-ubyte.gz": (1, 2049),
    "t10k-images-idx3-ubyte.gz": (3, 2051),
    "t10k-labels-idx1-ubyte.gz": (1, 2049),
}
MANIFEST = "manifest.json"


class DataValidationError(ValueError):
    """The source data is missing, corrupt or inconsistent."""


def decode_idx(name: str, blob: bytes, rank: int) -> tuple[list[int], bytes]:
    """Decompress one gzipped unsigned-byte IDX file and check it fully (gzip CRC, magic, size).

    Returns its dimensions and its data bytes.
    """
    magic_expected = {1: 2049, 3: 2051}[rank]
    try:
        payload = gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataValidationError(f"{name}: not a valid gzip file ({exc})") from exc
    header = 4 + 4 * rank
    if len(payload) < header:
        raise DataValidationError(f"{name}: too short to be an IDX file")
    magic, *dims = struct.unpack(f">{1 + rank}I", payload[:header])
    if magic != magic_expected:
        raise DataValidationError(f"{name}: IDX magic {magic}, expected {magic_expected}")
    size = 1
    for dim in dims:
        size *= dim
    if len(payload) - header != size:
        raise DataValidationError(f"{name}: {len(payload) - header} data bytes, header says {size}")
    return dims, payload[header:]


def inspect_idx(name: str, blob: bytes) -> dict[str, Any]:
    """Check one of the four files and describe it (checksum, item count, shape)."""
    rank, _ = IDX_FILES[name]
    dims, _ = decode_idx(name, blob, rank)
    return {"sha256": hashlib.sha256(blob).hexdigest(), "count": dims[0], "shape": dims, "bytes": len(blob)}


def read_source(source: ObjectStoragePath) -> dict[str, bytes]:
    """The four files' bytes; raise naming every missing file first."""
    missing = [name for name in IDX_FILES if not (source / name).exists()]
    if missing:
        raise DataValidationError(f"no Fashion-MNIST IDX files at {source}: missing {', '.join(missing)}")
    return {name: (source / name).read_bytes() for name in IDX_FILES}


def validate_source(blobs: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    """Validate the four files and check that image and label counts agree."""
    described = {name: inspect_idx(name, blob) for name, blob in blobs.items()}
    for split in ("train", "t10k"):
        images = described[f"{split}-images-idx3-ubyte.gz"]["count"]
        labels = described[f"{split}-labels-idx1-ubyte.gz"]["count"]
        if images != labels:
            raise DataValidationError(f"{split}: {images} images but {labels} labels")
    return described


def prepare_data(source: ObjectStoragePath, target: ObjectStoragePath) -> dict[str, Any]:
    """Copy the validated files to ``target`` unless identical copies are already there.

    The manifest (checksums) is written last, so a prefix without one is never trusted.
    """
    blobs = read_source(source)
    described = validate_source(blobs)
    manifest_path = target / MANIFEST
    if manifest_path.exists():
        existing = read_json(manifest_path).get("files", {})
        same = all(existing.get(n, {}).get("sha256") == d["sha256"] for n, d in described.items())
        if same and all((target / n).exists() and (target / n).size() == d["bytes"] for n, d in described.items()):
            log.info("data already at %s with matching checksums: skipped copy", target)
            return {"uri": uri_of(target), "copied": [], "files": described}
    if target.protocol in ("file", "local", ""):
        target.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in IDX_FILES:
        (target / name).write_bytes(blobs[name])
        copied.append(name)
    write_json_atomic(manifest_path, {"source": uri_of(source), "files": described})
    log.info("copied %d files from %s to %s", len(copied), source, target)
    return {"uri": uri_of(target), "copied": copied, "files": described}
