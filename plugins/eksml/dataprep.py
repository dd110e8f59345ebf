"""Validate the Fashion-MNIST IDX files and version them in the data store.

A data version is content-addressed (``<interval>-<digest of the four files>``) and never
rewritten once its manifest exists, so every model version's ``data_uri`` keeps meaning the
bytes it was trained on, whatever later runs of the same interval bring.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import struct
from typing import TYPE_CHECKING, Any

from eksml.contract import (
    IDX_MAGIC,
    IDX_RANKS,
    IMAGE_SHAPE,
    MANIFEST,
    NUM_CLASSES,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    IdxError,
)
from eksml.contract import decode_idx as decode_idx_data
from eksml.errors import InvalidInput
from eksml.storage import read_json, uri_of, write_json_atomic

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)


class DataValidationError(InvalidInput):
    """The source data is missing, corrupt or inconsistent."""


def decode_idx(name: str, blob: bytes, rank: int) -> tuple[list[int], memoryview]:
    """Decompress one gzipped unsigned-byte IDX file and check it fully (gzip CRC, magic, size).

    Returns its dimensions and its data bytes; the decoding is the images' (``eksml.contract``).
    """
    try:
        return decode_idx_data(blob, rank)
    except IdxError as exc:
        raise DataValidationError(f"{name}: {exc}") from exc


def inspect_idx(name: str, blob: bytes) -> dict[str, Any]:
    """Check one of the four files and describe it (checksum, item count, shape).

    Images must be 28x28 and labels within 0..9: anything else can never train.
    """
    rank = IDX_RANKS[name]
    dims, data = decode_idx(name, blob, rank)
    if dims[0] == 0:
        raise DataValidationError(f"{name}: holds no items")
    if rank == 3 and tuple(dims[1:]) != IMAGE_SHAPE:
        raise DataValidationError(f"{name}: images are {dims[1]}x{dims[2]}, expected {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]}")
    if rank == 1 and max(data) >= NUM_CLASSES:
        bad = sum(1 for label in data if label >= NUM_CLASSES)
        raise DataValidationError(f"{name}: {bad} label(s) outside 0..{NUM_CLASSES - 1} (largest {max(data)})")
    return {"sha256": hashlib.sha256(blob).hexdigest(), "count": dims[0], "shape": dims, "bytes": len(blob)}


def data_digest(described: dict[str, dict[str, Any]]) -> str:
    """12 hex digits naming the content of the four files: the data version's identity."""
    lines = "".join(f"{name}:{described[name]['sha256']}\n" for name in sorted(described))
    return hashlib.sha256(lines.encode()).hexdigest()[:12]


def read_source(source: ObjectStoragePath) -> dict[str, bytes]:
    """The four files' bytes; raise naming every missing file first."""
    missing = [name for name in IDX_RANKS if not (source / name).exists()]
    if missing:
        raise DataValidationError(f"no Fashion-MNIST IDX files at {source}: missing {', '.join(missing)}")
    return {name: (source / name).read_bytes() for name in IDX_RANKS}


def validate_source(blobs: dict[str, bytes], manifest: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Validate the four files: each on its own, image and label counts per split, the training
    split larger than the test split (swapped files), and the checksums of ``manifest`` (the
    one a landed drop or a data version carries) when there is one."""
    described = {name: inspect_idx(name, blob) for name, blob in blobs.items()}
    for split, images_file, labels_file in (("train", TRAIN_IMAGES, TRAIN_LABELS), ("t10k", TEST_IMAGES, TEST_LABELS)):
        images, labels = described[images_file]["count"], described[labels_file]["count"]
        if images != labels:
            raise DataValidationError(f"{split}: {images} images but {labels} labels")
    train, test = described[TRAIN_IMAGES]["count"], described[TEST_IMAGES]["count"]
    if train <= test:
        raise DataValidationError(f"{train} training images but {test} test images: train and t10k files swapped?")
    for name, expected in ((manifest or {}).get("files") or {}).items():
        if name in described and expected.get("sha256") != described[name]["sha256"]:
            raise DataValidationError(
                f"{name}: sha256 {described[name]['sha256'][:12]}... differs from its "
                f"manifest's {str(expected.get('sha256'))[:12]}...: changed after it was written"
            )
    return described


def read_manifest(folder: ObjectStoragePath) -> dict[str, Any] | None:
    """The folder's manifest.json (checksums of its files), or None."""
    path = folder / MANIFEST
    return read_json(path) if path.exists() else None


def first_training_items(blobs: dict[str, bytes], count: int) -> dict[str, bytes]:
    """The four files with the training split cut to its first ``count`` images and labels
    (headers rewritten; the test split untouched), e.g. for a dated series of growing drops."""
    cut = dict(blobs)
    for name in (TRAIN_IMAGES, TRAIN_LABELS):
        rank = IDX_RANKS[name]
        dims, data = decode_idx(name, blobs[name], rank)
        if count > dims[0]:
            raise DataValidationError(f"{name}: {count} items asked for, the source holds {dims[0]}")
        item = len(data) // dims[0]
        header = struct.pack(f">{1 + rank}I", IDX_MAGIC[rank], count, *dims[1:])
        cut[name] = gzip.compress(header + data[: count * item], mtime=0)
    return cut


def prepare_data(
    source: ObjectStoragePath, target: ObjectStoragePath, train_images: int | None = None
) -> dict[str, Any]:
    """Validate ``source`` and copy it to ``target`` (see :func:`store_data`), its training
    split cut to the first ``train_images`` items when given."""
    blobs = read_source(source)
    validate_source(blobs, read_manifest(source))
    if train_images is not None:
        blobs = first_training_items(blobs, train_images)
    return store_data(source, blobs, validate_source(blobs), target)


def verify_version(target: ObjectStoragePath, described: dict[str, dict[str, Any]]) -> None:
    """Check that the data version at ``target`` holds exactly the files ``described``: its manifest
    and the SHA-256 of every file's bytes. Raises :class:`DataValidationError` naming the file and
    both hashes; the folder is never rewritten (models trained on it name it)."""
    existing = read_json(target / MANIFEST).get("files", {})
    for name, want in described.items():
        listed = existing.get(name, {}).get("sha256")
        if listed != want["sha256"]:
            raise DataValidationError(
                f"{uri_of(target / name)}: the data version's manifest records SHA-256 {listed}, the source's is "
                f"{want['sha256']}; data versions are never overwritten"
            )
        path = target / name
        if not path.exists():
            raise DataValidationError(
                f"{uri_of(path)} is missing from its data version (manifest SHA-256 {listed}); data versions are "
                "never rewritten: restore the file or remove the folder"
            )
        found = hashlib.sha256(path.read_bytes()).hexdigest()
        if found != listed:
            raise DataValidationError(
                f"{uri_of(path)} has SHA-256 {found}, its manifest {listed}: changed after the data version was "
                "written; data versions are never rewritten: restore the file or remove the folder"
            )


def store_data(
    source: ObjectStoragePath, blobs: dict[str, bytes], described: dict[str, dict[str, Any]], target: ObjectStoragePath
) -> dict[str, Any]:
    """Copy validated files to ``target`` unless it already is their data version.

    The manifest (checksums) is written last, so a prefix without one is never trusted; a
    prefix with one is a data version and is never rewritten (:func:`verify_version`).
    """
    manifest_path = target / MANIFEST
    if manifest_path.exists():
        verify_version(target, described)
        log.info("data already at %s, every file matching its manifest's SHA-256: skipped copy", target)
        return {"uri": uri_of(target), "copied": [], "files": described}
    if target.protocol in ("file", "local", ""):
        target.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in IDX_RANKS:
        (target / name).write_bytes(blobs[name])
        copied.append(name)
    write_json_atomic(manifest_path, {"source": uri_of(source), "files": described})
    log.info("copied %d files from %s to %s", len(copied), source, target)
    return {"uri": uri_of(target), "copied": copied, "files": described}
