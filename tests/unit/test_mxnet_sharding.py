"""Data sharding and learning-rate scaling of the mxnet-horovod image (pure Python, no MXNet)."""

from __future__ import annotations

from pathlib import Path

import pytest
from project_files import load_script

_PATH = Path(__file__).resolve().parents[2] / "images" / "mxnet-horovod" / "sharding.py"
sharding = load_script("mxnet_horovod_sharding", _PATH)


@pytest.mark.parametrize("total,size", [(4000, 2), (60000, 3), (10, 4), (7, 7), (5, 1)])
def test_train_shards_are_equal_disjoint_and_drop_less_than_one_per_rank(total, size):
    shards = [sharding.train_shard(total, rank, size) for rank in range(size)]
    assert len({len(s) for s in shards}) == 1  # same step count on every rank
    positions = [p for s in shards for p in s]
    assert len(positions) == len(set(positions))
    assert total - len(positions) == total % size
    assert all(0 <= p < total for p in positions)


@pytest.mark.parametrize("total,size", [(1000, 2), (10000, 3), (3, 4), (0, 2), (11, 1)])
def test_eval_blocks_cover_every_test_image_once_in_rank_order(total, size):
    blocks = [sharding.eval_shard(total, rank, size) for rank in range(size)]
    assert [p for b in blocks for p in b] == list(range(total))
    assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_too_few_training_images_for_the_workers_is_refused():
    with pytest.raises(ValueError, match="3 training images cannot be shared by 4 workers"):
        sharding.train_shard(3, 0, 4)


@pytest.mark.parametrize("rank,size", [(2, 2), (-1, 2), (0, 0)])
def test_bad_rank_or_size_is_refused(rank, size):
    with pytest.raises(ValueError):
        sharding.train_shard(100, rank, size)
    with pytest.raises(ValueError):
        sharding.eval_shard(100, rank, size)


def test_learning_rate_grows_with_the_number_of_workers():
    assert sharding.scaled_learning_rate(0.001, 1) == pytest.approx(0.001)
    assert sharding.scaled_learning_rate(0.001, 8) == pytest.approx(0.008)
    with pytest.raises(ValueError):
        sharding.scaled_learning_rate(0.001, 0)
