"""The ``metrics.json`` every training image writes, whatever the framework."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import CLASS_NAMES


def build_metrics(
    *,
    framework: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    test_loss: float,
    epochs: int,
    images_per_sec: float,
    wall_time_s: float,
    train_images: int,
    **extra: Any,
) -> dict[str, Any]:
    """Accuracy, per-class accuracy and the confusion matrix of predictions on the test set."""
    y_true = np.asarray(y_true).astype(int)
    y_pred = np.asarray(y_pred).astype(int)
    n = len(CLASS_NAMES)
    confusion = np.zeros((n, n), dtype=int)
    np.add.at(confusion, (y_true, y_pred), 1)
    support = confusion.sum(axis=1)
    per_class = {
        name: (float(confusion[i, i] / support[i]) if support[i] else None) for i, name in enumerate(CLASS_NAMES)
    }
    return {
        "framework": framework,
        "test_accuracy": float((y_true == y_pred).mean()),
        "test_loss": float(test_loss),
        "test_images": int(len(y_true)),
        "train_images": int(train_images),
        "per_class_accuracy": per_class,
        "confusion_matrix": confusion.tolist(),
        "class_names": list(CLASS_NAMES),
        "epochs": int(epochs),
        "images_per_sec": float(images_per_sec),
        "wall_time_s": float(wall_time_s),
        **extra,
    }


def time_left_s(epoch_times_s: list[float], done: int, total: int) -> float:
    """Seconds the remaining epochs should take at the mean pace of this attempt's epochs."""
    if not epoch_times_s or done >= total:
        return 0.0
    return (total - done) * sum(epoch_times_s) / len(epoch_times_s)


def progress_line(
    epoch: int,
    total: int,
    loss: float,
    accuracy: float,
    test_loss: float,
    test_accuracy: float,
    images_per_sec: float,
    epoch_time_s: float,
    left_s: float,
) -> str:
    """The one per-epoch progress line every training image prints (``make run`` shows it)."""
    # A run without a per-epoch held-out set (NaN) scores its test set once, at the end.
    held_out = "" if math.isnan(test_accuracy) else f"val_loss={test_loss:.4f} val_accuracy={test_accuracy:.4f} "
    return (
        f"epoch {epoch}/{total} loss={loss:.4f} accuracy={accuracy:.4f} {held_out}"
        f"images/s={images_per_sec:.0f} time={epoch_time_s:.1f}s left={left_s:.0f}s"
    )
