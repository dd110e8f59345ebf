"""trainkit.metrics: the metrics.json every training image writes."""

from __future__ import annotations

import json

import pytest

np = pytest.importorskip("numpy", reason="numpy is not installed in this virtualenv (add it to requirements.txt)")

from trainkit import CLASS_NAMES  # noqa: E402
from trainkit.metrics import build_metrics  # noqa: E402


def test_accuracy_per_class_and_confusion() -> None:
    y_true = np.array([0, 0, 1, 1, 2, 2, 2, 9], dtype=np.int32)
    y_pred = np.array([0, 1, 1, 1, 2, 0, 2, 9])
    m = build_metrics(
        framework="tensorflow",
        y_true=y_true,
        y_pred=y_pred,
        test_loss=np.float32(0.25),
        epochs=3,
        images_per_sec=700.5,
        wall_time_s=12.0,
        train_images=100,
        workers=1,
    )
    assert m["test_accuracy"] == pytest.approx(6 / 8)
    assert m["per_class_accuracy"]["T-shirt/top"] == pytest.approx(0.5)
    assert m["per_class_accuracy"]["Trouser"] == 1.0
    assert m["per_class_accuracy"]["Pullover"] == pytest.approx(2 / 3)
    assert m["per_class_accuracy"]["Bag"] is None  # no test image of that class
    confusion = np.array(m["confusion_matrix"])
    assert confusion.shape == (10, 10) and confusion.sum() == 8
    assert confusion[0, 1] == 1 and confusion[2, 0] == 1 and np.trace(confusion) == 6
    assert (m["framework"], m["epochs"], m["test_images"], m["train_images"], m["workers"]) == (
        "tensorflow",
        3,
        8,
        100,
        1,
    )
    assert m["class_names"] == list(CLASS_NAMES)
    assert json.loads(json.dumps(m)) == m  # plain JSON types only (no numpy scalars)
