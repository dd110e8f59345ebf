"""The serving contract: what a client sends and what it gets back, whatever the framework.

Clients send images as raw pixel values exactly as the IDX files hold them (0..255), one
28x28 array per image, and get back per image the class index, its name and the ten class
probabilities. Each model's own input (scaling, layout, logits or probabilities) is the
backend's business (see ``backends.py``), so one request works against every model version.
Every check here runs before the model does, and fails with a one-line message that says
what to fix; the exception's ``status`` is the HTTP status the server answers with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trainkit.contract import IMAGE_SHAPE

#: Names of the model's outputs, in the order responses list them.
OUTPUT_NAMES = ("class", "label", "probabilities")


class RequestError(ValueError):
    """The request cannot be served as sent; the message says why."""

    status = 400


class BatchTooLarge(RequestError):
    """More images in one request than the server's maximum batch size."""

    status = 413


class BodyTooLarge(RequestError):
    """The request body exceeds the server's body limit (refused before it is read in full)."""

    status = 413


class NotFound(RequestError):
    """No such route, model or version."""

    status = 404


class MethodNotAllowed(RequestError):
    """The route exists but not for this method; ``allow`` lists the methods it takes."""

    status = 405

    def __init__(self, message: str, allow: Sequence[str]) -> None:
        super().__init__(message)
        self.allow = tuple(allow)


def check_batch(n: int, max_batch_size: int, where: str) -> None:
    """Refuse an empty or too large batch before its values are converted."""
    if n == 0:
        raise RequestError(f"{where}: no images in the request")
    if n > max_batch_size:
        raise BatchTooLarge(
            f"{where}: {n} images in one request; this server takes at most {max_batch_size} (split the request)"
        )


def check_pixels(array: np.ndarray, max_batch_size: int, where: str) -> np.ndarray:
    """Shape (N, 28, 28), 1 <= N <= max, finite values in 0..255 -> float32."""
    if array.ndim != 3 or array.shape[1:] != IMAGE_SHAPE:
        per_image = tuple(array.shape[1:]) if array.ndim >= 1 else ()
        raise RequestError(
            f"{where}: each image must be a 28x28 array of pixel values, got shape {per_image} "
            f"(request shape {tuple(array.shape)}, expected (N, 28, 28))"
        )
    check_batch(array.shape[0], max_batch_size, where)
    pixels = array.astype(np.float32, copy=False)
    low, high = float(pixels.min()), float(pixels.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        raise RequestError(f"{where}: pixel values must be finite numbers")
    if low < 0 or high > 255:
        raise RequestError(f"{where}: pixel values must lie in 0..255 (raw IDX pixels), got {low:g}..{high:g}")
    return pixels


_KINDS = {"b": "booleans", "U": "strings", "S": "bytes", "O": "mixed or null values"}


def numeric_array(values: Any, where: str) -> np.ndarray:
    """A numeric ndarray from (nested) JSON lists; strings, booleans, nulls, ragged lists fail."""
    try:
        array = np.asarray(values)
    except ValueError as exc:  # ragged nesting ("inhomogeneous shape")
        raise RequestError(
            f"{where}: images must be equally sized nested lists of numbers ({str(exc).splitlines()[0]})"
        ) from None
    except OverflowError:  # an integer beyond 64 bits
        raise RequestError(f"{where}: an integer is out of range for any numeric type") from None
    if array.dtype.kind not in "iuf":
        raise RequestError(f"{where}: pixel values must be numbers, got {_KINDS.get(array.dtype.kind, array.dtype)}")
    return array


def predictions(probabilities: np.ndarray, class_names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Class index and name of each row of probabilities."""
    classes = probabilities.argmax(axis=1)
    return classes, [class_names[i] for i in classes]
