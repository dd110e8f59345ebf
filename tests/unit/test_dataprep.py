"""Data validation and versioned copies, on the real Fashion-MNIST files."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from eksml.contract import IDX_RANKS
from eksml.dataprep import DataValidationError, prepare_data, read_source, validate_source
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
    assert sorted(first["copied"]) == sorted(IDX_RANKS)
    assert (target / "manifest.json").exists()
    assert prepare_data(source, target)["copied"] == []


@pytest.mark.parametrize("damage", ["same size, labels swapped", "truncated", "deleted"])
def test_a_damaged_data_version_is_refused_naming_the_file_and_never_rewritten(drop, settings, damage):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fixtures.poisoned_data import swap_labels

    source = store_path(str(drop), settings)
    target = store_path(f"{settings.data_root}/interval-a", settings)
    prepare_data(source, target)
    labels = target / "train-labels-idx1-ubyte.gz"
    good = labels.read_bytes()
    expected = hashlib.sha256(good).hexdigest()
    if damage == "deleted":
        labels.unlink()
        match = f"train-labels-idx1-ubyte.gz is missing from its data version \\(manifest SHA-256 {expected}\\)"
    else:
        bad = swap_labels(good) if damage.startswith("same size") else good[: len(good) // 2]
        assert len(bad) == len(good) or damage == "truncated"
        labels.write_bytes(bad)
        match = f"train-labels-idx1-ubyte.gz has SHA-256 {hashlib.sha256(bad).hexdigest()}, its manifest {expected}"
    before = {p.name: p.read_bytes() for p in Path(target.path).iterdir()}
    with pytest.raises(DataValidationError, match=match):
        prepare_data(source, target)
    assert {p.name: p.read_bytes() for p in Path(target.path).iterdir()} == before  # nothing rewritten


def test_folder_without_idx_files(tmp_path, settings):
    with pytest.raises(DataValidationError, match="no Fashion-MNIST IDX files at .*missing train-images"):
        read_source(store_path(str(tmp_path), settings))


def test_corrupt_gzip_and_wrong_counts(dataset_dir, tmp_path, settings):
    for name in IDX_RANKS:
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


# --- validation before spend: what can never train is refused before anything is copied ----------

from slices import write_idx, write_small_drop  # noqa: E402


@pytest.fixture
def drop(dataset_dir, tmp_path):
    return write_small_drop(dataset_dir, tmp_path / "drop", {"train": 300, "t10k": 100})


def _validate(folder, settings):
    from eksml.dataprep import read_manifest

    path = store_path(str(folder), settings)
    return validate_source(read_source(path), read_manifest(path))


def test_labels_outside_0_to_9_are_refused(drop, settings):
    labels = bytearray(gzip.decompress((drop / "train-labels-idx1-ubyte.gz").read_bytes())[8:])
    labels[17] = 10
    write_idx(drop / "train-labels-idx1-ubyte.gz", 2049, [300], bytes(labels))
    with pytest.raises(DataValidationError, match=r"train-labels-idx1-ubyte.gz: 1 label\(s\) outside 0..9"):
        _validate(drop, settings)


def test_images_that_are_not_28x28_are_refused(drop, settings):
    write_idx(drop / "t10k-images-idx3-ubyte.gz", 2051, [100, 32, 32], bytes(100 * 32 * 32))
    with pytest.raises(DataValidationError, match="t10k-images-idx3-ubyte.gz: images are 32x32, expected 28x28"):
        _validate(drop, settings)


def test_swapped_train_and_test_files_are_refused(drop, settings, tmp_path):
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    for kind in ("images-idx3", "labels-idx1"):
        shutil.copy(drop / f"train-{kind}-ubyte.gz", swapped / f"t10k-{kind}-ubyte.gz")
        shutil.copy(drop / f"t10k-{kind}-ubyte.gz", swapped / f"train-{kind}-ubyte.gz")
    with pytest.raises(DataValidationError, match="100 training images but 300 test images: .*swapped"):
        _validate(swapped, settings)


def test_a_file_changed_after_its_manifest_was_written_is_refused(drop, settings, tmp_path):
    landed = store_path(f"{settings.store_uri}/landing/one", settings)
    prepare_data(store_path(str(drop), settings), landed)
    blob = (drop / "t10k-labels-idx1-ubyte.gz").read_bytes()
    other = gzip.compress(gzip.decompress(blob)[:8] + bytes(100), mtime=0)  # valid, but not what was landed
    (landed / "t10k-labels-idx1-ubyte.gz").write_bytes(other)
    with pytest.raises(DataValidationError, match="t10k-labels-idx1-ubyte.gz: sha256 .* differs from its manifest"):
        _validate(landed.path, settings)


# --- lineage: a data version is immutable once written ------------------------------------------


def test_a_second_drop_for_the_same_interval_gets_its_own_data_version(dataset_dir, tmp_path, monkeypatch):
    from datetime import datetime, timezone

    from eksml import pipeline

    monkeypatch.setenv("EKSML_STORE_URI", (tmp_path / "store").as_uri())
    first = write_small_drop(dataset_dir, tmp_path / "a", {"train": 300, "t10k": 100})
    second = write_small_drop(dataset_dir, tmp_path / "b", {"train": 300, "t10k": 100}, offset=300)
    facts = {
        "run_id": "r",
        "dag_id": "fashion_mnist_training",
        "interval_start": datetime(2026, 11, 16, tzinfo=timezone.utc),
        "interval_end": datetime(2026, 11, 23, tzinfo=timezone.utc),
    }
    params = {"framework": "tensorflow", "epochs": 1}
    plan_a = pipeline.prepare({"params": params, "source_uri": str(first)}, {**facts, "run_id": "r1"})
    a_files = {p.name: p.read_bytes() for p in Path(plan_a["data_uri"][7:]).iterdir()}
    plan_b = pipeline.prepare({"params": params, "source_uri": str(second)}, {**facts, "run_id": "r2"})
    assert plan_a["data_uri"] != plan_b["data_uri"]
    assert {p.name: p.read_bytes() for p in Path(plan_a["data_uri"][7:]).iterdir()} == a_files
    # Re-running the first drop's interval reuses its version unchanged.
    assert (
        pipeline.prepare({"params": params, "source_uri": str(first)}, {**facts, "run_id": "r3"})["data_uri"]
        == plan_a["data_uri"]
    )
    # The registered version records the checksums of the data it was trained and evaluated on.
    staging = Path(plan_a["candidates"]["tensorflow"]["staging_uri"][7:])
    staging.mkdir(parents=True)
    # The trainer records the SHA-256 of what it read (trainkit.data); here one file differs from the plan.
    read = {name: hashlib.sha256((first / name).read_bytes()).hexdigest() for name in IDX_RANKS}
    read["t10k-labels-idx1-ubyte.gz"] = "0" * 64
    (staging / "metrics.json").write_text(json.dumps({"test_accuracy": 0.8, "data_sha256": read}))
    (staging / "evaluation.json").write_text('{"candidate": {"test_accuracy": 0.8}}')
    registered = pipeline.register(plan_a, {**facts, "run_id": "r1"})
    meta = json.loads((Path(registered[0]["uri"][7:]) / "metadata.json").read_text())
    assert meta["data_uri"] == plan_a["data_uri"]
    assert {name: f["sha256"] for name, f in meta["data_files"].items()} == read
    assert {f["sha256_from"] for f in meta["data_files"].values()} == {"trainer"}


def test_a_data_version_is_never_rewritten_with_other_bytes(drop, settings, dataset_dir, tmp_path):
    target = store_path(f"{settings.data_root}/fixed", settings)
    prepare_data(store_path(str(drop), settings), target)
    other = write_small_drop(dataset_dir, tmp_path / "other", {"train": 300, "t10k": 100}, offset=1)
    with pytest.raises(DataValidationError, match="manifest records SHA-256 .* data versions are never overwritten"):
        prepare_data(store_path(str(other), settings), target)
