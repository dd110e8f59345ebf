"""The serving contract: what a client sends and what it gets back, whatever the framework.

Clients send images as raw pixel values exactly as the IDX files hold them (0..255), one
28x28 array per image, and get back per image the class index, its name and the ten class
probabilities. Each model's own input (scaling, layout, logits or probabilities) is the
backend's business (see ``backends.py``), so one request works against every model version.
Every check here runs before the model does, and fails with a message that says what to fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

IMAGE_SHAPE = (28, 28)
#: V2 datatypes accepted for the pixel tensor (all are converted to float32).
V2_DATATYPES = ("FP32", "FP64", "UINT8", "INT32", "INT64")


class RequestError(ValueError):
    """The request cannot be served as sent; the message says why (HTTP 400)."""


class BatchTooLarge(RequestError):
    """More images in one request than the server's maximum batch size (HTTP 413)."""


def _check_pixels(array: np.ndarray, max_batch_size: int, where: str) -> np.ndarray:
    """Shape (N, 28, 28), 1 <= N <= max, finite values in 0..255 -> float32."""
    if array.ndim != 3 or array.shape[1:] != IMAGE_SHAPE:
        per_image = tuple(array.shape[1:]) if array.ndim >= 1 else ()
        raise RequestError(
            f"{where}: each image must be a 28x28 array of pixel values, got shape {per_image} "
            f"(request shape {tuple(array.shape)}, expected (N, 28, 28))")
    n = array.shape[0]
    if n == 0:
        raise RequestError(f"{where}: no images in the request")
    if n > max_batch_size:
        raise BatchTooLarge(f"{where}: {n} images in one request; this server takes at most "
                            f"{max_batch_size} (split the request)")
    pixels = array.astype(np.float32, copy=False)
    if not np.isfinite(pixels).all():
        raise RequestError(f"{where}: pixel values must be finite numbers")
    low, high = float(pixels.min()), float(pixels.max())
    if low < 0 or high > 255:
        raise RequestError(f"{where}: pixel values must lie in 0..255 (raw IDX pixels), got {low:g}..{high:g}")
    return pixels


def _numeric_array(values: Any, where: str) -> np.ndarray:
    """A numeric ndarray from nested JSON lists; strings, booleans, nulls and ragged lists fail."""
    try:
        array = np.asarray(values)
    except ValueError as exc:  # ragged nesting ("inhomogeneous shape")
        raise RequestError(f"{where}: images must be equally sized nested lists of numbers ({exc})") from None
    if array.dtype.kind not in "iuf":
        kind = {"b": "booleans", "U": "strings", "S": "bytes", "O": "mixed or null values"}.get(
            array.dtype.kind, str(array.dtype))
        raise RequestError(f"{where}: pixel values must be numbers, got {kind}")
    return array


def parse_v1(payload: Any, max_batch_size: int) -> np.ndarray:
    """Pixels from a V1 (TensorFlow Serving style) body ``{"instances": [image, ...]}``."""
    if not isinstance(payload, dict):
        raise RequestError('body must be a JSON object {"instances": [...]}')
    if "instances" not in payload:
        raise RequestError('body has no "instances": send {"instances": [28x28 pixel arrays]}')
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise RequestError('"instances" must be a list of 28x28 pixel arrays')
    if not instances:
        raise RequestError('"instances" is empty: send at least one image')
    return _check_pixels(_numeric_array(instances, "instances"), max_batch_size, "instances")


def parse_v2(inputs: Sequence[Any], max_batch_size: int) -> np.ndarray:
    """Pixels from the single input tensor of an Open Inference Protocol (V2) request.

    ``inputs`` are KServe ``InferInput`` objects (``name``, ``datatype``, ``shape``, ``as_numpy()``).
    """
    if len(inputs) != 1:
        raise RequestError(f"expected exactly one input tensor (the images), got {len(inputs)}")
    tensor = inputs[0]
    where = f"input {tensor.name!r}"
    if tensor.datatype not in V2_DATATYPES:
        raise RequestError(f"{where}: datatype {tensor.datatype} is not supported; "
                           f"send pixel values as one of {', '.join(V2_DATATYPES)}")
    shape = list(tensor.shape)
    if len(shape) != 3 or tuple(shape[1:]) != IMAGE_SHAPE:
        raise RequestError(f"{where}: shape {shape} is not [N, 28, 28]")
    try:
        array = tensor.as_numpy()
    except (ValueError, TypeError) as exc:
        raise RequestError(f"{where}: data does not match datatype {tensor.datatype} "
                           f"and shape {shape} ({exc})") from None
    return _check_pixels(array, max_batch_size, where)


def predictions(probabilities: np.ndarray, class_names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Class index and name of each row of probabilities."""
    classes = probabilities.argmax(axis=1)
    return classes, [class_names[i] for i in classes]
