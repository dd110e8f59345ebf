"""TensorFlow Serving's REST API (what KServe calls V1), as its documentation writes requests.

* ``POST /v1/models/<name>[/versions/<v>]:predict`` with the row format
  ``{"instances": [image, ...]}`` (an image is a 28x28 array, or ``{"pixels": image}``) or the
  columnar format ``{"inputs": [image, ...]}`` / ``{"inputs": {"pixels": [image, ...]}}``;
  answered ``{"predictions": [{"class", "label", "probabilities"}, ...]}`` (row) or
  ``{"outputs": {"class": [...], "label": [...], "probabilities": [...]}}`` (columnar), with
  ``model_version``. The content type is not looked at, as TF Serving does not.
* ``GET /v1/models/<name>[/versions/<v>]``: model status (``model_version_status``).
* ``GET /v1/models/<name>[/versions/<v>]/metadata``: the ``serving_default`` signature.

Errors are ``{"error": "<one line>"}``, TF Serving's shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import simdjson

from .contract import IMAGE_SHAPE, RequestError, check_batch, check_pixels, numeric_array

SIGNATURE = "serving_default"
INPUT_NAME = "pixels"


def _images(value: Any, where: str, max_batch_size: int) -> np.ndarray:
    if not isinstance(value, list):
        raise RequestError(f'"{where}" must be a list of 28x28 pixel arrays')
    if not value:
        raise RequestError(f'"{where}" is empty: send at least one image')
    check_batch(len(value), max_batch_size, where)  # before any value is converted
    return check_pixels(numeric_array(value, where), max_batch_size, where)


def _named(value: Any, where: str) -> Any:
    """The ``pixels`` entry of a named-input object (TF Serving's multi-input form)."""
    if set(value) != {INPUT_NAME}:
        raise RequestError(f'{where}: this model has one input named "{INPUT_NAME}", got {sorted(value)}')
    return value[INPUT_NAME]


def parse_predict(payload: Any, max_batch_size: int) -> tuple[np.ndarray, bool]:
    """Pixels of a predict request and whether it was columnar."""
    if not isinstance(payload, dict):
        raise RequestError('body must be a JSON object: {"instances": [...]} or {"inputs": [...]}')
    signature = payload.get("signature_name", SIGNATURE)
    if signature != SIGNATURE:
        raise RequestError(f'signature_name {signature!r} is not served; this model has "{SIGNATURE}"')
    if "instances" in payload and "inputs" in payload:
        raise RequestError('send either "instances" (row format) or "inputs" (columnar format), not both')
    if "instances" in payload:
        instances = payload["instances"]
        if isinstance(instances, list) and instances and isinstance(instances[0], dict):
            instances = [_named(item, "instances") if isinstance(item, dict) else item for item in instances]
        return _images(instances, "instances", max_batch_size), False
    if "inputs" in payload:
        inputs = payload["inputs"]
        if isinstance(inputs, dict):
            inputs = _named(inputs, "inputs")
        return _images(inputs, "inputs", max_batch_size), True
    raise RequestError('body has no "instances" or "inputs": send {"instances": [28x28 pixel arrays]}')


def plain_instances(body: bytes, max_batch_size: int) -> np.ndarray | None:
    """Pixels of a body that is exactly ``{"instances": [N images of 28 rows of 28 numbers]}``,
    1 <= N <= ``max_batch_size``, parsed straight into an array and checked as ``parse_predict``
    checks them (RequestError); None for any other body.

    The common request, decoded without a Python object per number: JSON to lists and lists to
    an array took about 1 ms of a batch-32 request (25,088 numbers), simdjson's buffer a third of
    that. Every other body (other keys, named or columnar inputs, anything wrong) returns None
    and goes through ``parse_predict``, which reads it exactly as before and says what is wrong,
    so this path only answers where it answers the same. It is exact because: one key; every
    image and row checked to be an array of 28; the buffer holds numbers only (a string, boolean
    or null fails it); and the text has no ``[`` besides those 1 + 29N arrays (no string can
    hold one, so no array is nested in a row).
    """
    try:
        document = simdjson.Parser().parse(body)  # a parser per call: parsers are not shared between threads
        if not isinstance(document, simdjson.Object) or len(document) != 1:
            return None
        instances = document.get("instances")
        if not isinstance(instances, simdjson.Array) or not 1 <= len(instances) <= max_batch_size:
            return None
        n, (rows, side) = len(instances), IMAGE_SHAPE
        for image in instances:
            if not isinstance(image, simdjson.Array) or len(image) != rows:
                return None
            for row in image:
                if not isinstance(row, simdjson.Array) or len(row) != side:
                    return None
        if body.count(b"[") != 1 + n * (1 + rows):
            return None
        values = np.frombuffer(instances.as_buffer(of_type="d"), dtype=np.float64)
    except (ValueError, TypeError, RuntimeError, KeyError):  # what simdjson raises on any of the above
        return None
    if values.size != n * rows * side:
        return None
    return check_pixels(values.reshape(n, rows, side), max_batch_size, "instances")


def predict_response(
    version: str, classes: np.ndarray, labels: list[str], probabilities: np.ndarray, columnar: bool
) -> dict[str, Any]:
    """Row or columnar answer; numpy arrays are serialized by orjson (float32 as float32)."""
    if columnar:
        return {
            "model_version": version,
            "outputs": {"class": classes, "label": labels, "probabilities": probabilities},
        }
    return {
        "model_version": version,
        "predictions": [
            {"class": int(c), "label": label, "probabilities": p}
            for c, label, p in zip(classes.tolist(), labels, probabilities, strict=True)
        ],
    }


def status(name: str, version: str, ready: bool) -> dict[str, Any]:
    """TF Serving's GetModelStatus answer (plus ``name`` and ``ready``, which KServe's V1 gives)."""
    return {
        "name": name,
        "ready": ready,
        "model_version_status": [
            {
                "version": version,
                "state": "AVAILABLE" if ready else "LOADING",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ],
    }


def _tensor(dtype: str, *dims: int) -> dict[str, Any]:
    return {
        "dtype": dtype,
        "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in dims], "unknown_rank": False},
        "name": "",
    }


def metadata(name: str, version: str, class_count: int) -> dict[str, Any]:
    """TF Serving's GetModelMetadata answer: the one signature clients call."""
    signature = {
        "inputs": {INPUT_NAME: _tensor("DT_FLOAT", -1, *IMAGE_SHAPE)},
        "outputs": {
            "class": _tensor("DT_INT64", -1),
            "label": _tensor("DT_STRING", -1),
            "probabilities": _tensor("DT_FLOAT", -1, class_count),
        },
        "method_name": "tensorflow/serving/predict",
    }
    return {
        "model_spec": {"name": name, "signature_name": "", "version": version},
        "metadata": {"signature_def": {"signature_def": {SIGNATURE: signature}}},
    }
