"""Fashion-MNIST from its four IDX ``.gz`` files, at any URI the store can read."""

from __future__ import annotations

import gzip
import struct
import zlib

import numpy as np

from . import store

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
_MAGIC = {3: 2051, 1: 2049}  # IDX magic numbers for unsigned-byte tensors of rank 3 and 1
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10


class DataError(ValueError):
    """The data location does not hold valid Fashion-MNIST IDX files."""


def _read_idx(uri: str, rank: int, limit: int | None) -> np.ndarray:
    if not store.exists(uri):
        raise DataError(f"missing Fashion-MNIST file: {uri}")
    try:
        with store.open_uri(uri) as raw:
            payload = gzip.decompress(raw.read())
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{uri} is not a valid gzip file: {exc}") from exc
    header = 4 + 4 * rank
    if len(payload) < header:
        raise DataError(f"{uri} is too short to be an IDX file")
    magic, *dims = struct.unpack(f">{1 + rank}I", payload[:header])
    if magic != _MAGIC[rank]:
        raise DataError(f"{uri}: IDX magic {magic} != {_MAGIC[rank]} (wrong or corrupt file)")
    expected = int(np.prod(dims))
    if len(payload) - header != expected:
        raise DataError(f"{uri}: {len(payload) - header} bytes of data, header says {expected}")
    array = np.frombuffer(payload, dtype=np.uint8, offset=header).reshape(dims)
    return array[:limit] if limit else array


def load_fashion_mnist(
    data_uri: str, limit_train: int | None = None, limit_test: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(x_train, y_train, x_test, y_test)``: uint8 images (N, 28, 28) and int32 labels."""
    missing = [name for name in FILES.values() if not store.exists(store.join(data_uri, name))]
    if missing:
        raise DataError(f"no Fashion-MNIST data at {data_uri}: missing {', '.join(missing)}")
    x_train = _read_idx(store.join(data_uri, FILES["train_images"]), 3, limit_train)
    y_train = _read_idx(store.join(data_uri, FILES["train_labels"]), 1, limit_train).astype(np.int32)
    x_test = _read_idx(store.join(data_uri, FILES["test_images"]), 3, limit_test)
    y_test = _read_idx(store.join(data_uri, FILES["test_labels"]), 1, limit_test).astype(np.int32)
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise DataError(f"{data_uri}: image and label counts differ")
    # Checked here so that a wrong dataset fails before training, not as an index error after it.
    for name, images in (("train", x_train), ("test", x_test)):
        if images.shape[1:] != IMAGE_SHAPE or len(images) == 0:
            raise DataError(f"{data_uri}: {name} images have shape {images.shape}, expected (N>0, 28, 28)")
    for name, labels in (("train", y_train), ("test", y_test)):
        if labels.min() < 0 or labels.max() >= NUM_CLASSES:
            raise DataError(f"{data_uri}: {name} labels outside 0..{NUM_CLASSES - 1}")
    return x_train, y_train, x_test, y_test
