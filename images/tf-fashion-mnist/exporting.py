"""Export the trained model for serving, and score the exported artifact itself.

``saved_model/`` is a TensorFlow SavedModel (Keras 3 ``model.export``) with the
``serving_default`` signature that TF Serving, KServe and ``tf.saved_model.load`` use;
``model.keras`` is the full Keras model for further training or inspection. The test metrics
are computed by the reloaded SavedModel, so they describe exactly what gets served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from network import INPUT_NAME, OUTPUT_NAME, SIGNATURE, to_input

SAVED_MODEL_DIR = "saved_model"
KERAS_FILE = "model.keras"
#: Matches Keras' clipping in its cross-entropy, so the test loss equals what ``evaluate`` reports.
_EPSILON = 1e-7


def export_model(model: Any, folder: Path) -> list[str]:
    """Write ``saved_model/`` and ``model.keras`` into ``folder``."""
    model.export(str(folder / SAVED_MODEL_DIR), format="tf_saved_model", verbose=False)
    model.save(str(folder / KERAS_FILE))
    if not (folder / SAVED_MODEL_DIR / "saved_model.pb").is_file():
        raise RuntimeError(f"Keras export wrote no saved_model.pb in {folder / SAVED_MODEL_DIR}")
    return [SAVED_MODEL_DIR, KERAS_FILE]


def saved_model_predict(saved_model_dir: Path | str, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Class probabilities (N, 10) from the SavedModel's serving signature, for raw uint8/float images."""
    import tensorflow as tf

    serve = tf.saved_model.load(str(saved_model_dir)).signatures[SIGNATURE]
    pixels = to_input(images)
    out = [
        serve(**{INPUT_NAME: tf.constant(pixels[i : i + batch_size])})[OUTPUT_NAME].numpy()
        for i in range(0, len(pixels), batch_size)
    ]
    return np.concatenate(out)


def cross_entropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean sparse categorical cross-entropy of predicted probabilities."""
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, _EPSILON, 1.0 - _EPSILON)).mean())
