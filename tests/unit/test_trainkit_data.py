"""trainkit.data: Fashion-MNIST from IDX .gz files, and clear errors for anything else."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest

np = pytest.importorskip("numpy", reason="numpy is not installed in this virtualenv (add it to requirements.txt)")

from trainkit.data import FILES, DataError, load_fashion_mnist  # noqa: E402


def _idx(array: np.ndarray, magic: int | None = None) -> bytes:
    magic = magic if magic is not None else {3: 2051, 1: 2049}[array.ndim]
    return struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def _write(folder: Path, name: str, payload: bytes) -> None:
    (folder / FILES[name]).write_bytes(gzip.compress(payload, compresslevel=1))


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (20, 28, 28)),
        "train_labels": rng.integers(0, 10, 20),
        "test_images": rng.integers(0, 256, (8, 28, 28)),
        "test_labels": rng.integers(0, 10, 8),
    }
    for name, array in arrays.items():
        _write(tmp_path, name, _idx(array))
    return tmp_path, arrays


def test_loads_arrays_with_their_types(dataset) -> None:
    folder, arrays = dataset
    x_train, y_train, x_test, y_test = load_fashion_mnist(f"file://{folder}")
    assert x_train.dtype == np.uint8 and x_train.shape == (20, 28, 28)
    assert y_train.dtype == np.int32 and y_test.dtype == np.int32
    np.testing.assert_array_equal(x_train, arrays["train_images"])
    np.testing.assert_array_equal(y_test, arrays["test_labels"])


def test_limits_take_the_first_images(dataset) -> None:
    folder, arrays = dataset
    x_train, y_train, x_test, y_test = load_fashion_mnist(str(folder), limit_train=5, limit_test=3)
    assert (len(x_train), len(y_train), len(x_test), len(y_test)) == (5, 5, 3, 3)
    np.testing.assert_array_equal(y_train, arrays["train_labels"][:5])


def test_a_folder_without_idx_files_names_every_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no Fashion-MNIST data at") as exc:
        load_fashion_mnist(str(tmp_path))
    assert all(name in str(exc.value) for name in FILES.values())


def test_not_a_gzip_file(dataset) -> None:
    folder, _ = dataset
    (folder / FILES["test_images"]).write_bytes(b"this is not gzip data")
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: not a valid gzip file"):
        load_fashion_mnist(str(folder))


def test_truncated_gzip_file(dataset) -> None:
    folder, _ = dataset
    path = folder / FILES["train_images"]
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: not a valid gzip file"):
        load_fashion_mnist(str(folder))


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        ("train_labels", _idx(np.zeros((20, 28, 28))), "IDX magic 2051, expected 2049"),
        ("train_images", _idx(np.zeros((20, 28, 28)))[:-5], "data bytes, header says"),
        ("train_images", b"\x00\x00", "too short to be an IDX file"),
        ("test_labels", _idx(np.zeros(7)), "image and label counts differ"),
        ("test_labels", _idx(np.full(8, 10)), "test labels outside 0..9"),
        ("test_images", _idx(np.zeros((8, 32, 32))), "test images have shape (8, 32, 32)"),
    ],
)
def test_wrong_content_is_named(dataset, name: str, payload: bytes, message: str) -> None:
    folder, _ = dataset
    _write(folder, name, payload)
    with pytest.raises(DataError) as exc:
        load_fashion_mnist(str(folder))
    assert message in str(exc.value)


def test_real_fashion_mnist(dataset_dir: Path) -> None:
    x_train, y_train, x_test, y_test = load_fashion_mnist(str(dataset_dir), limit_train=1000)
    assert x_train.shape == (1000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert np.bincount(y_test, minlength=10).tolist() == [1000] * 10  # the published test split


def _manifest(folder: Path) -> dict[str, str]:
    import hashlib
    import json

    digests = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in FILES.values()}
    (folder / "manifest.json").write_text(json.dumps({"files": {n: {"sha256": d} for n, d in digests.items()}}))
    return digests


def test_every_file_is_checked_against_the_manifest_and_the_digests_of_what_was_read_are_kept(dataset) -> None:
    folder, _ = dataset
    digests = _manifest(folder)
    assert load_fashion_mnist(str(folder)).sha256 == digests


def test_a_file_changed_after_the_manifest_is_refused_naming_it_and_both_hashes(dataset) -> None:
    import hashlib
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fixtures.poisoned_data import swap_labels

    folder, _ = dataset
    digests = _manifest(folder)
    labels = folder / FILES["train_labels"]
    poisoned = swap_labels(labels.read_bytes(), swaps=5)
    labels.write_bytes(poisoned)  # a valid labels file of the same size
    with pytest.raises(DataError) as refused:
        load_fashion_mnist(str(folder))
    message = str(refused.value)
    assert FILES["train_labels"] in message
    assert hashlib.sha256(poisoned).hexdigest() in message and digests[FILES["train_labels"]] in message
