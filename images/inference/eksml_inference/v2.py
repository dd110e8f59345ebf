"""The Open Inference Protocol (KServe V2, Triton's HTTP/REST API), JSON and binary tensor data.

A request is JSON, or, with the ``Inference-Header-Content-Length: N`` header (the binary
tensor data extension), N bytes of JSON followed by the raw little-endian bytes of every input
whose ``parameters.binary_data_size`` says so. The content type is not looked at (standard
clients send none in JSON mode). Requested ``outputs`` pick and order the outputs; an output
is returned as binary data when its ``parameters.binary_data`` is true, or when the request's
``parameters.binary_data_output`` is true and the output does not say otherwise. Responses
never carry ``null`` fields. Errors are ``{"error": "<one line>"}``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from .contract import IMAGE_SHAPE, OUTPUT_NAMES, RequestError, check_batch, check_pixels, numeric_array

HEADER_LENGTH = "inference-header-content-length"
#: Pixel datatypes accepted, with their little-endian numpy types.
DATATYPES = {"FP32": "<f4", "FP64": "<f8", "UINT8": "u1", "INT32": "<i4", "INT64": "<i8"}
OUTPUT_TYPES = {"class": "INT64", "label": "BYTES", "probabilities": "FP32"}
#: Little-endian numpy types of the numeric outputs (binary tensor data is little-endian).
_OUTPUT_NUMPY = {"class": "<i8", "probabilities": "<f4"}
EXTENSIONS = ("binary_tensor_data",)


@dataclass
class Request:
    """A decoded infer request: validated pixels and what the client wants back."""

    pixels: np.ndarray
    id: str | None = None
    #: (output name, as binary) in the order the client asked for.
    outputs: list[tuple[str, bool]] = field(default_factory=list)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RequestError(f"{where} must be a JSON object")
    return value


def _parameters(value: dict[str, Any], where: str) -> dict[str, Any]:
    params = value.get("parameters")
    return {} if params is None else _object(params, f"{where} parameters")


def _flag(params: dict[str, Any], key: str, default: bool, where: str) -> bool:
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise RequestError(f"{where}: parameter {key} must be true or false, got {value!r}")
    return value


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise RequestError(f"{where}: shape must be a list of integers, got {value!r}")
    if any(d < 0 for d in value):
        raise RequestError(f"{where}: shape {value} has a negative dimension; a request's shape is concrete")
    if len(value) != 3 or tuple(value[1:]) != IMAGE_SHAPE:
        raise RequestError(f"{where}: shape {value} is not [N, 28, 28]")
    return tuple(value)


def _json_data(data: Any, datatype: str, count: int, where: str) -> np.ndarray:
    if not isinstance(data, list):
        raise RequestError(f"{where}: data must be a list of numbers")
    array = numeric_array(data, where)
    if array.size != count:
        raise RequestError(
            f"{where}: data does not match datatype {datatype} and shape: {array.size} values for {count} elements"
        )
    dtype = np.dtype(DATATYPES[datatype])
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if array.dtype.kind == "f":  # orjson reads integers beyond 64 bits as floats
            whole = bool(np.all(np.isfinite(array))) and bool(np.all(array == np.round(array)))
            if not whole:
                raise RequestError(f"{where}: {datatype} values must be integers")
            low, high = float(array.min()), float(array.max())
        else:
            low, high = int(array.min()), int(array.max())
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise RequestError(f"{where}: value {bad:.0f} is out of range for {datatype} ({info.min}..{info.max})")
        if array.dtype.kind == "f":
            raise RequestError(f"{where}: {datatype} values must be integers, got numbers written as floats")
    return array.reshape(-1)


def _binary_data(raw: memoryview, datatype: str, count: int, where: str) -> np.ndarray:
    dtype = np.dtype(DATATYPES[datatype])
    if len(raw) != count * dtype.itemsize:
        raise RequestError(
            f"{where}: binary_data_size {len(raw)} does not match datatype {datatype} and shape "
            f"({count} elements of {dtype.itemsize} bytes)"
        )
    return np.frombuffer(raw, dtype=dtype)


def _outputs(request: dict[str, Any], binary_default: bool) -> list[tuple[str, bool]]:
    wanted = request.get("outputs")
    if wanted is None:
        return [(name, binary_default) for name in OUTPUT_NAMES]
    if not isinstance(wanted, list):
        raise RequestError('outputs must be a list of {"name": ...} objects')
    chosen: list[tuple[str, bool]] = []
    for i, item in enumerate(wanted):
        item = _object(item, f"outputs[{i}]")
        name = item.get("name")
        if name not in OUTPUT_NAMES:
            raise RequestError(f"unknown output {name!r}; this model has {', '.join(OUTPUT_NAMES)}")
        if any(name == seen for seen, _ in chosen):
            raise RequestError(f"output {name!r} requested twice")
        chosen.append(
            (name, _flag(_parameters(item, f"output {name!r}"), "binary_data", binary_default, f"output {name!r}"))
        )
    return chosen


def parse_infer(body: bytes, header_length: str | None, max_batch_size: int) -> Request:
    """Decode and validate an infer request (JSON, or JSON + binary tensor data)."""
    if header_length is None:
        head, binary = body, memoryview(b"")
    else:
        try:
            size = int(header_length)
        except ValueError:
            raise RequestError(f"Inference-Header-Content-Length {header_length!r} is not a number") from None
        if not 0 <= size <= len(body):
            raise RequestError(f"Inference-Header-Content-Length {size} is outside the body ({len(body)} bytes)")
        head, binary = body[:size], memoryview(body)[size:]
    try:
        request = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"body is not valid JSON: {exc}") from None
    request = _object(request, "the request")
    if "inputs" not in request:
        raise RequestError('the request has no "inputs": send {"inputs": [{"name", "shape", "datatype", "data"}]}')
    inputs = request["inputs"]
    if not isinstance(inputs, list) or len(inputs) != 1:
        count = len(inputs) if isinstance(inputs, list) else "no list of"
        raise RequestError(f"expected exactly one input tensor (the images), got {count}")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise RequestError(f"id must be a string, got {request_id!r}")
    binary_default = _flag(_parameters(request, "the request"), "binary_data_output", False, "the request")
    outputs = _outputs(request, binary_default)  # an unknown output fails before any data is converted

    tensor = _object(inputs[0], "inputs[0]")
    where = f"input {tensor.get('name')!r}"
    datatype = tensor.get("datatype")
    if datatype not in DATATYPES:
        raise RequestError(
            f"{where}: datatype {datatype} is not supported; send pixel values as one of {', '.join(DATATYPES)}"
        )
    shape = _shape(tensor.get("shape"), where)
    check_batch(shape[0], max_batch_size, where)  # before any value is converted
    count = math.prod(shape)
    binary_size = _parameters(tensor, where).get("binary_data_size")
    if binary_size is not None:
        if not isinstance(binary_size, int) or isinstance(binary_size, bool) or binary_size < 0:
            raise RequestError(f"{where}: binary_data_size must be a non-negative integer")
        if "data" in tensor:
            raise RequestError(f"{where}: has both data and binary_data_size")
        if binary_size != len(binary):
            raise RequestError(f"{where}: binary_data_size {binary_size} but {len(binary)} bytes follow the JSON")
        flat = _binary_data(binary, datatype, count, where)
    else:
        if len(binary):
            raise RequestError(
                f"{len(binary)} bytes of binary data follow the JSON but no input declares binary_data_size"
            )
        if "data" not in tensor:
            raise RequestError(f"{where}: has neither data nor binary_data_size")
        flat = _json_data(tensor["data"], datatype, count, where)
    return Request(check_pixels(flat.reshape(shape), max_batch_size, where), request_id, outputs)


def _bytes_tensor(values: Sequence[str]) -> bytes:
    """BYTES elements as the binary extension encodes them: 4-byte little-endian length, then bytes."""
    encoded = [v.encode() for v in values]
    return b"".join(struct.pack("<I", len(e)) + e for e in encoded)


def infer_response(
    request: Request, name: str, version: str, classes: np.ndarray, labels: list[str], probabilities: np.ndarray
) -> tuple[bytes, int | None]:
    """Response body and, when some output is binary, the length of its JSON part."""
    values = {
        "class": np.ascontiguousarray(classes, dtype=_OUTPUT_NUMPY["class"]),
        "label": labels,
        "probabilities": np.ascontiguousarray(probabilities, dtype=_OUTPUT_NUMPY["probabilities"]),
    }
    shapes = {"class": [len(labels)], "label": [len(labels)], "probabilities": list(probabilities.shape)}
    outputs, blobs = [], []
    for output, binary in request.outputs:
        entry: dict[str, Any] = {"name": output, "datatype": OUTPUT_TYPES[output], "shape": shapes[output]}
        if binary:
            value = values[output]
            blob = _bytes_tensor(value) if output == "label" else value.tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            value = values[output]
            entry["data"] = value.ravel() if isinstance(value, np.ndarray) else value
        outputs.append(entry)
    answer: dict[str, Any] = {"model_name": name, "model_version": version, "outputs": outputs}
    if request.id is not None:
        answer["id"] = request.id
    head = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)


def model_metadata(name: str, version: str, platform: str, class_count: int) -> dict[str, Any]:
    return {
        "name": name,
        "versions": [version],
        "platform": platform,
        "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [-1, *IMAGE_SHAPE]}],
        "outputs": [
            {"name": "class", "datatype": "INT64", "shape": [-1]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, class_count]},
        ],
    }
