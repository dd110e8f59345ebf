"""Each training image checks its data where it uses it: a data version whose labels were swapped
after preparation (same size, still valid) is refused with exit status 2 naming the file, before
the first epoch and before the framework is even imported."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from slices import write_small_drop

from eksml.dataprep import prepare_data
from eksml.settings import load_settings
from eksml.storage import store_path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from fixtures.poisoned_data import swap_labels  # noqa: E402


@pytest.fixture
def poisoned_version(dataset_dir, tmp_path):
    settings = load_settings({"store_uri": (tmp_path / "store").as_uri()})
    drop = write_small_drop(dataset_dir, tmp_path / "drop", {"train": 300, "t10k": 100})
    version = store_path(f"{settings.data_root}/interval-a", settings)
    prepare_data(store_path(str(drop), settings), version)
    labels = Path(version.path) / "train-labels-idx1-ubyte.gz"
    good = labels.read_bytes()
    labels.write_bytes(swap_labels(good))
    return Path(version.path), labels, hashlib.sha256(good).hexdigest(), hashlib.sha256(labels.read_bytes()).hexdigest()


@pytest.mark.parametrize("image", ["tf-fashion-mnist", "mxnet-horovod"])
def test_the_trainer_refuses_a_poisoned_data_version_with_exit_2_naming_the_file(image, poisoned_version, tmp_path):
    python = ROOT / ".venvs" / image / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no {image} virtualenv (bash scripts/setup.sh)")
    folder, labels, manifest_sha, read_sha = poisoned_version
    model = tmp_path / "model"
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    proc = subprocess.run(
        [str(python), "train.py", "--data-uri", str(folder), "--model-uri", str(model), "--epochs", "1"],
        cwd=ROOT / "images" / image,
        env={**env, "PYTHONPATH": str(ROOT / "images" / "common"), "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and str(labels) in error
    assert read_sha in error and manifest_sha in error
    assert "epoch" not in proc.stdout.lower() and not model.exists()
