"""Data validation and versioned copies, on the real Fashion-MNIST files."""

from __future__ import annotations

import gzip
import shutil

import pytest

from eksml.dataprep import IDX_FILES, DataValidationError, prepare_data, read_source, validate_source
from eksml.settings import load_settings
from eksml.storage import store_path


@pytest.fixture
def settings(tmp_path):
    return load_settings({"store_uri": (tmp_path / "store").as_uri()})


def test_real_files_validate(dataset_dir, settings):
    described = validate_source(read_source(store_path(str(dataset_dir), settings)))
    assert described["train-images-idx3-ubyte.gz"]["shape"] == [60000, 28, 28]
    assert described["t10k-labels-idx1-ubyte.gz"]["count"] == 10000


def test_copy_then_skip_when_checksums_match(dataset_dir, settings):
    source = store_path(str(dataset_dir), settings)
    target = store_path(f"{settings.data_root}/interval-a", settings)
    first = prepare_data(source, target)
    assert sorted(first["copied"]) == sorted(IDX_FILES)
    assert (target / "manifest.json").exists()
    assert prepare_data(source, target)["copied"] == []
    (target / "t10k-labels-idx1-ubyte.gz").write_bytes(b"truncated")
    assert prepare_data(source, target)["copied"] == sorted(IDX_FILES, key=list(IDX_FILES).index)


def test_folder_without_idx_files(tmp_path, settings):
    with pytest.raises(DataValidationError, match="no Fashion-MNIST IDX files at .*missing train-images"):
        read_source(store_path(str(tmp_path), settings))


def test_corrupt_gzip_and_wrong_counts(dataset_dir, tmp_path, settings):
    for name in IDX_FILES:
        shutil.copy(dataset_dir / name, tmp_path / name)
    blob = (tmp_path / "t10k-images-idx3-ubyte.gz").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataValidationError, match="t10k-images-idx3-ubyte.gz: not a valid gzip file"):
        validate_source(read_source(store_path(str(tmp_path), settings)))
    labels = gzip.decompress((dataset_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    shutil.copy(dataset_dir / "t10k-images-idx3-ubyte.gz", tmp_path / "t10k-images-idx3-ubyte.gz")
    short = labels[:4] + (500).to_bytes(4, "big") + labels[8:508]
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(short))
    with pytest.raises(DataValidationError, match="t10k: 10000 images but 500 labels"):
        validate_source(read_source(store_path(str(tmp_path), settings)))
