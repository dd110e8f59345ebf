"""Fashion-MNIST from its four IDX ``.gz`` files, at any URI the store can read.

Data is verified where it is used: when the folder has a ``manifest.json`` (every data version
the pipeline prepares has one), the SHA-256 of each file as read must match it, before any
epoch; the digests of what was read travel with the arrays (``FashionMnist.sha256``) into the
version's metrics, so the registry records the bytes the model saw, not those it was meant to.
"""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np

from . import store
from .contract import (
    IDX_RANKS,
    IMAGE_SHAPE,
    MANIFEST,
    NUM_CLASSES,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    IdxError,
    decode_idx,
)

FILES = {
    "train_images": TRAIN_IMAGES,
    "train_labels": TRAIN_LABELS,
    "test_images": TEST_IMAGES,
    "test_labels": TEST_LABELS,
}


log = logging.getLogger(__name__)


class DataError(ValueError):
    """The data location does not hold valid Fashion-MNIST IDX files."""


class FashionMnist(tuple):
    """``(x_train, y_train, x_test, y_test)``; ``sha256`` maps each file name to the SHA-256 of its bytes as read."""

    sha256: dict[str, str]


def _manifest_digests(data_uri: str) -> dict[str, str] | None:
    """File name -> SHA-256 from the folder's manifest.json, or None when it has none."""
    uri = store.join(data_uri, MANIFEST)
    if not store.exists(uri):
        return None
    try:
        with store.open_uri(uri) as raw:
            files = json.loads(raw.read())["files"]
        return {name: entry["sha256"] for name, entry in files.items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{uri} is not a readable manifest ({exc!r})") from None


def _read_idx(
    uri: str, rank: int, limit: int | None, expected_sha256: str | None, digests: dict[str, str]
) -> np.ndarray:
    if not store.exists(uri):
        raise DataError(f"missing Fashion-MNIST file: {uri}")
    try:
        with store.open_uri(uri) as raw:
            blob = raw.read()
    except OSError as exc:
        raise DataError(f"{uri} cannot be read: {exc}") from exc
    digest = hashlib.sha256(blob).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise DataError(
            f"{uri}: SHA-256 {digest} differs from its manifest's {expected_sha256}: the file changed after the "
            "data version was written; refusing to train on it"
        )
    digests[uri.rsplit("/", 1)[-1]] = digest
    try:
        dims, data = decode_idx(blob, rank)
    except IdxError as exc:
        raise DataError(f"{uri}: {exc}") from exc
    array = np.frombuffer(data, dtype=np.uint8).reshape(dims)
    return array[:limit] if limit else array


def load_fashion_mnist(data_uri: str, limit_train: int | None = None, limit_test: int | None = None) -> FashionMnist:
    """Return ``(x_train, y_train, x_test, y_test)``: uint8 images (N, 28, 28) and int32 labels.

    Raises :class:`DataError` naming the file when one differs from the folder's manifest."""
    missing = [name for name in FILES.values() if not store.exists(store.join(data_uri, name))]
    if missing:
        raise DataError(f"no Fashion-MNIST data at {data_uri}: missing {', '.join(missing)}")
    manifest = _manifest_digests(data_uri)
    if manifest is None:
        log.warning("no %s at %s: the data files' checksums are not verified", MANIFEST, data_uri)
    else:
        unlisted = [name for name in FILES.values() if name not in manifest]
        if unlisted:
            raise DataError(f"{store.join(data_uri, MANIFEST)} lists no checksum for {', '.join(unlisted)}")
    digests: dict[str, str] = {}

    def read(key: str, limit: int | None) -> np.ndarray:
        name = FILES[key]
        return _read_idx(store.join(data_uri, name), IDX_RANKS[name], limit, manifest and manifest[name], digests)

    x_train = read("train_images", limit_train)
    y_train = read("train_labels", limit_train).astype(np.int32)
    x_test = read("test_images", limit_test)
    y_test = read("test_labels", limit_test).astype(np.int32)
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise DataError(f"{data_uri}: image and label counts differ")
    # Checked here so that a wrong dataset fails before training, not as an index error after it.
    for name, images in (("train", x_train), ("test", x_test)):
        if images.shape[1:] != IMAGE_SHAPE or len(images) == 0:
            raise DataError(f"{data_uri}: {name} images have shape {images.shape}, expected (N>0, 28, 28)")
    for name, labels in (("train", y_train), ("test", y_test)):
        if labels.min() < 0 or labels.max() >= NUM_CLASSES:
            raise DataError(f"{data_uri}: {name} labels outside 0..{NUM_CLASSES - 1}")
    data = FashionMnist((x_train, y_train, x_test, y_test))
    data.sha256 = digests
    return data
