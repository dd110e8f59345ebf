"""Which images each Horovod rank trains and evaluates on.

Pure Python (no numpy, no MXNet) so the arithmetic is tested without the image's virtualenv.
"""

from __future__ import annotations


def _check(total: int, rank: int, size: int) -> None:
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if not 0 <= rank < size:
        raise ValueError(f"rank must be in [0, {size}), got {rank}")
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")


def train_shard(total: int, rank: int, size: int) -> range:
    """Positions of rank's training images: equal-sized, disjoint blocks.

    Every rank gets ``total // size`` images (the remainder, fewer than ``size`` images, is
    left out) so all ranks run the same number of steps: DistributedTrainer allreduces the
    gradients at each step, and a rank with one batch more would wait forever for the others.
    """
    _check(total, rank, size)
    per_rank = total // size
    if per_rank == 0:
        raise ValueError(f"{total} training images cannot be shared by {size} workers")
    return range(rank * per_rank, (rank + 1) * per_rank)


def eval_shard(total: int, rank: int, size: int) -> range:
    """Positions of rank's test images: disjoint blocks covering every image exactly once.

    Evaluation has no per-batch collective, so blocks may differ in size by one.
    """
    _check(total, rank, size)
    base, extra = divmod(total, size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def scaled_learning_rate(learning_rate: float, size: int) -> float:
    """Learning rate for ``size`` workers: the global batch grows ``size`` times, so does the step."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    return learning_rate * size
