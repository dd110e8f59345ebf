"""The contract between the Airflow side and the images has one home that both really import.

``images/common/trainkit/contract.py`` is the home; ``eksml.contract`` loads that file for the
Airflow side. These tests check that it stays importable everywhere the images run (stdlib
only, in every image's build, in SageMaker's staged source, on the local profile's path), that
the Airflow side exports all of it, and that the plugins' layout and data code read what the
images' code writes through it.
"""

from __future__ import annotations

import ast
import gzip
import struct
import sys
from pathlib import Path

import pytest

import trainkit.contract as image_contract
from eksml import contract, dataprep, layout
from eksml.sagemaker.operators import stage_source_dir
from eksml.settings import Settings
from trainkit.data import DataError, load_fashion_mnist

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / "images" / "common" / "trainkit" / "contract.py"
IMAGES = ("inference", "mxnet-horovod", "tf-fashion-mnist")


def test_the_home_imports_the_standard_library_only():
    """Airflow's environment and the images' share nothing else (no numpy in Airflow's path)."""
    imported = set()
    for node in ast.walk(ast.parse(HOME.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative import: the Airflow side loads the file on its own"
            imported.add(node.module.split(".")[0])
    assert imported - {"__future__"} <= sys.stdlib_module_names, imported


def test_the_airflow_side_loads_the_images_file_and_exports_all_of_it():
    assert contract.SOURCE == HOME
    public = {name for name in vars(image_contract) if not name.startswith("_")} - {
        "annotations",
        "gzip",
        "struct",
        "zlib",
    }
    missing = sorted(name for name in public if not hasattr(contract, name))
    assert missing == []
    for name in public:
        mine, theirs = getattr(contract, name), getattr(image_contract, name)
        assert mine == theirs or mine.__qualname__ == theirs.__qualname__, name


@pytest.mark.parametrize("image", IMAGES)
def test_every_image_build_carries_the_contract(image):
    dockerfile = (ROOT / "images" / image / "Dockerfile").read_text()
    assert "COPY common/trainkit /opt/eksml/trainkit" in dockerfile


def test_sagemakers_staged_source_and_the_local_profile_carry_it(tmp_path):
    staged = stage_source_dir("tf-fashion-mnist", ROOT / "images", tmp_path / "source")
    assert (staged / "trainkit" / "contract.py").read_text() == HOME.read_text()
    assert Path(Settings().images_dir) / "common" / "trainkit" / "contract.py" == HOME


def test_the_version_files_the_layout_reads_are_the_ones_the_images_write():
    assert (layout.METRICS, layout.EVALUATION, layout.METADATA) == (
        image_contract.METRICS,
        image_contract.EVALUATION,
        image_contract.METADATA,
    )
    assert layout.PLOTS == image_contract.PLOTS
    assert set(layout.READABLE) == {image_contract.METRICS, image_contract.EVALUATION, image_contract.METADATA} | set(
        image_contract.PLOTS
    )


def _idx(rank: int, items: int, payload: bytes | None = None) -> bytes:
    dims = (items, 28, 28) if rank == 3 else (items,)
    size = items * (784 if rank == 3 else 1)
    return gzip.compress(struct.pack(f">{1 + rank}I", image_contract.IDX_MAGIC[rank], *dims) + (payload or bytes(size)))


def test_a_data_version_dataprep_accepts_is_one_the_images_read(tmp_path):
    blobs = {name: _idx(rank, 30 if "train" in name else 10) for name, rank in image_contract.IDX_RANKS.items()}
    described = dataprep.validate_source(blobs)
    for name, blob in blobs.items():
        (tmp_path / name).write_bytes(blob)
    x_train, y_train, x_test, y_test = load_fashion_mnist(str(tmp_path))
    assert [len(x_train), len(y_train), len(x_test), len(y_test)] == [30, 30, 10, 10]
    assert described[image_contract.TRAIN_IMAGES]["shape"] == [30, *image_contract.IMAGE_SHAPE]


def test_both_sides_refuse_a_broken_idx_file_with_the_same_reason(tmp_path):
    broken = _idx(3, 10)[:-7]
    with pytest.raises(dataprep.DataValidationError) as airflow_side:
        dataprep.decode_idx(image_contract.TEST_IMAGES, broken, 3)
    for name, rank in image_contract.IDX_RANKS.items():
        (tmp_path / name).write_bytes(broken if name == image_contract.TEST_IMAGES else _idx(rank, 10))
    with pytest.raises(DataError) as image_side:
        load_fashion_mnist(str(tmp_path))
    reason = str(airflow_side.value).split(": ", 1)[1]
    assert str(image_side.value).endswith(reason)
