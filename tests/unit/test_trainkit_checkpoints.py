"""trainkit.checkpoints: per-epoch checkpoints that a retried run resumes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainkit import store
from trainkit.checkpoints import CheckpointStore


def _epoch_dir(tmp_path: Path, epoch: int) -> Path:
    folder = tmp_path / f"local-{epoch}"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(bytes([epoch]) * 8)
    return folder


def test_without_a_location_nothing_is_kept(tmp_path: Path) -> None:
    ckpt = CheckpointStore(None)
    ckpt.save(1, _epoch_dir(tmp_path, 1), [{"epoch": 1}])
    assert ckpt.latest_epoch() == 0
    assert ckpt.history() == []
    with pytest.raises(ValueError, match="no checkpoint location"):
        ckpt.restore(1)


def test_save_then_resume_from_the_latest_epoch(tmp_path: Path) -> None:
    ckpt = CheckpointStore(f"file://{tmp_path}/ckpt/")
    assert ckpt.latest_epoch() == 0
    ckpt.save(1, _epoch_dir(tmp_path, 1), [{"epoch": 1, "loss": 0.9}])
    ckpt.save(2, _epoch_dir(tmp_path, 2), [{"epoch": 1, "loss": 0.9}, {"epoch": 2, "loss": 0.5}])
    again = CheckpointStore(f"file://{tmp_path}/ckpt")  # a new process: state is in the store only
    assert again.latest_epoch() == 2
    assert [h["epoch"] for h in again.history()] == [1, 2]
    assert (again.restore(2) / "weights.bin").read_bytes() == bytes([2]) * 8
    assert (again.restore(1) / "weights.bin").read_bytes() == bytes([1]) * 8


def test_an_epoch_cut_off_before_latest_json_is_not_resumed(tmp_path: Path) -> None:
    uri = f"{tmp_path}/ckpt"
    ckpt = CheckpointStore(uri)
    ckpt.save(1, _epoch_dir(tmp_path, 1), [{"epoch": 1}])
    store.upload_dir(_epoch_dir(tmp_path, 2), store.join(uri, "epoch-0002"))  # files only, then "crash"
    assert ckpt.latest_epoch() == 1
    assert ckpt.history() == [{"epoch": 1}]
