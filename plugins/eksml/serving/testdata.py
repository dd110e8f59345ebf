"""A few real test images with their labels, for smoke tests (standard library only).

The Airflow environment has no numpy; images travel as nested lists of 0..255 integers,
which is also exactly what the server's V1 endpoint takes.
"""

from __future__ import annotations

from eksml.dataprep import DataValidationError, decode_idx
from eksml.settings import Settings
from eksml.storage import store_path

TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
IMAGE_SIDE = 28


def parse_idx(blob: bytes, rank: int, count: int, name: str) -> list:
    """The first ``count`` items of a gzipped IDX file: images as 28x28 lists, or labels."""
    dims, data = decode_idx(name, blob, rank)
    if dims[0] < count:
        raise DataValidationError(f"{name}: holds {dims[0]} items, {count} requested")
    if rank == 1:
        return list(data[:count])
    if dims[1:] != [IMAGE_SIDE, IMAGE_SIDE]:
        raise DataValidationError(f"{name}: images of {dims[1:]}, expected 28x28")
    size = IMAGE_SIDE * IMAGE_SIDE
    return [
        [list(data[i * size + r * IMAGE_SIDE : i * size + (r + 1) * IMAGE_SIDE]) for r in range(IMAGE_SIDE)]
        for i in range(count)
    ]


def load_test_images(data_uri: str, count: int, settings: Settings) -> tuple[list, list[int]]:
    """The first ``count`` test images and labels of the IDX files at ``data_uri``."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    folder = store_path(data_uri, settings)
    blobs = {}
    for name in (TEST_IMAGES, TEST_LABELS):
        path = folder / name
        if not path.exists():
            raise DataValidationError(f"no {name} at {data_uri}: cannot pick smoke-test images")
        blobs[name] = path.read_bytes()
    images = parse_idx(blobs[TEST_IMAGES], 3, count, TEST_IMAGES)
    labels = parse_idx(blobs[TEST_LABELS], 1, count, TEST_LABELS)
    return images, labels
