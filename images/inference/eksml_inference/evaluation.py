"""Score model versions on one held-out test set, with the backends that serve them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .backends import Backend, version_name

#: Matches Keras' clipping in its cross-entropy, so losses compare with the training's own.
_EPSILON = 1e-7


def predict_all(backend: Backend, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Class probabilities for uint8 images (N, 28, 28), in batches."""
    pixels = images.astype(np.float32)
    return np.concatenate([backend.predict(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)])


def score(probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, loss, per-class accuracy and confusion matrix (rows: true class, columns: predicted)."""
    labels = np.asarray(labels).astype(int)
    predicted = probabilities.argmax(axis=1)
    n = len(class_names)
    confusion = np.zeros((n, n), dtype=int)
    np.add.at(confusion, (labels, predicted), 1)
    support = confusion.sum(axis=1)
    picked = probabilities[np.arange(len(labels)), labels]
    return {
        "test_accuracy": float((predicted == labels).mean()),
        "test_loss": float(-np.log(np.clip(picked, _EPSILON, 1.0 - _EPSILON)).mean()),
        "test_images": int(len(labels)),
        "per_class_accuracy": {
            name: (float(confusion[i, i] / support[i]) if support[i] else None) for i, name in enumerate(class_names)
        },
        "confusion_matrix": confusion.tolist(),
    }


def describe(backend: Backend, scores: dict[str, Any]) -> dict[str, Any]:
    """One model's entry in evaluation.json."""
    info = backend.info
    return {
        "uri": info.uri,
        "version": version_name(info.uri),
        "framework": info.framework,
        "training_test_accuracy": info.metrics.get("test_accuracy"),
        **scores,
    }
