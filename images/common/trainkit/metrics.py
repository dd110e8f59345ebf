"""The ``metrics.json`` every training image writes, whatever the framework."""

from __future__ import annotations

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
        name: (float(confusion[i, i] / support[i]) if support[i] else None)
        for i, name in enumerate(CLASS_NAMES)
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
