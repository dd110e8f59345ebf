"""Smoke test of a served model: real images with known labels, over both protocols.

A deployment moves traffic only after this passes: the model reports ready, V1 and V2 answer
with one prediction per image, both protocols agree, every class is one the model's
``metrics.json`` names, and accuracy on the images reaches a threshold. The threshold is
``min_accuracy``, raised to ``expected_accuracy - tolerance`` when the version's evaluated
accuracy is known, so a server that loads the right files but feeds them wrongly (scaling,
layout) or serves another model fails here.

The images come from the version's own test data (:func:`load_test_images`, standard library
only: the Airflow environment has no numpy); they travel as nested lists of 0..255 integers,
which is also exactly what the server's V1 endpoint takes.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from eksml.contract import IMAGE_SHAPE
from eksml.dataprep import TEST_IMAGES, TEST_LABELS, DataValidationError, decode_idx
from eksml.errors import ServiceError
from eksml.settings import Settings
from eksml.storage import store_path

#: (method, path, JSON body or None) -> (HTTP status, decoded JSON body or text)
Transport = Callable[[str, str, Any], tuple[int, Any]]

log = logging.getLogger(__name__)


class SmokeTestError(ServiceError):
    """The served model did not answer correctly; ``result`` holds what was measured."""

    def __init__(self, reason: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.result = result or {}


def http_transport(base_url: str, timeout: float = 30.0) -> Transport:
    """Plain HTTP to ``base_url`` (the local server, or any reachable endpoint)."""
    base = base_url.rstrip("/")

    def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, _decode(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _decode(exc.read())
        except (urllib.error.URLError, OSError) as exc:
            return 0, f"no answer from {base}: {exc}"

    return call


#: Replies that say the way to the server failed, not the server: no answer (status 0: refused,
#: reset, cut short), or a gateway's (the API server's proxy, a load balancer) 502/503/504.
NOT_ANSWERED = frozenset({0, 502, 503, 504})


def patient(call: Transport, attempts: int, sleep: Callable[[float], None] = time.sleep) -> Transport:
    """``call`` asked up to ``attempts`` times (1, 2, 4... s apart) while the reply is NOT_ANSWERED.

    Every call of the smoke test is safe to repeat (a status read or a prediction). One broken
    connection on the way (a reply cut short by the API server's proxy under load) is not a
    verdict on a release; a server that keeps not answering still fails the test.
    """

    def ask(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        for attempt in range(attempts):
            if attempt:
                sleep(2.0 ** (attempt - 1))
            status, reply = call(method, path, body)
            if status not in NOT_ANSWERED:
                break
            log.warning(
                "%s %s, attempt %d of %d: HTTP %s %s", method, path, attempt + 1, attempts, status, str(reply)[:300]
            )
        return status, reply

    return ask


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw.decode(errors="replace")[:500]


def _require(ok: bool, reason: str, result: dict[str, Any]) -> None:
    if not ok:
        result["passed"] = False
        result["reason"] = reason
        raise SmokeTestError(reason, result)


def smoke_test(
    url: str,
    model_name: str,
    images: Sequence[Any],
    labels: Sequence[int],
    *,
    min_accuracy: float = 0.5,
    expected_accuracy: float | None = None,
    tolerance: float = 0.25,
    class_names: Sequence[str] | None = None,
    transport: Transport | None = None,
    attempts: int = 3,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Check the model served at ``url`` on ``images``; return the measurements or raise SmokeTestError."""
    if not images or len(images) != len(labels):
        raise ValueError(f"smoke test needs images with one label each, got {len(images)} and {len(labels)}")
    call = patient(transport or http_transport(url), attempts, sleep)
    threshold = min_accuracy if expected_accuracy is None else max(min_accuracy, expected_accuracy - tolerance)
    result: dict[str, Any] = {"url": url, "model": model_name, "images": len(images), "threshold": threshold}

    status, body = call("GET", f"/v1/models/{model_name}", None)
    _require(
        status == 200 and isinstance(body, dict) and body.get("ready") is True,
        f"model {model_name} is not ready at {url}: HTTP {status} {body}",
        result,
    )

    tic = time.perf_counter()
    status, body = call("POST", f"/v1/models/{model_name}:predict", {"instances": list(images)})
    result["v1_ms"] = round((time.perf_counter() - tic) * 1000, 1)
    _require(status == 200 and isinstance(body, dict), f"V1 predict failed: HTTP {status} {body}", result)
    predictions = body.get("predictions") or []
    result["version"] = body.get("model_version")
    _require(
        len(predictions) == len(images),
        f"V1 predict returned {len(predictions)} predictions for {len(images)} images",
        result,
    )
    classes = [p.get("class") for p in predictions]
    result["classes"], result["labels"] = classes, list(labels)
    names = list(class_names) if class_names else None
    valid = range(len(names)) if names else range(10)
    _require(
        all(isinstance(c, int) and c in valid for c in classes),
        f"V1 predict returned classes outside 0..{len(valid) - 1}: {classes}",
        result,
    )
    if names:
        wrong = [(p["class"], p.get("label")) for p in predictions if p.get("label") != names[p["class"]]]
        _require(not wrong, f"labels do not match the model's class names: {wrong[:3]}", result)

    flat = [int(v) for image in images for row in image for v in row]
    tic = time.perf_counter()
    status, body = call(
        "POST",
        f"/v2/models/{model_name}/infer",
        {"inputs": [{"name": "pixels", "datatype": "UINT8", "shape": [len(images), 28, 28], "data": flat}]},
    )
    result["v2_ms"] = round((time.perf_counter() - tic) * 1000, 1)
    _require(status == 200 and isinstance(body, dict), f"V2 infer failed: HTTP {status} {body}", result)
    outputs = {o.get("name"): o.get("data") for o in body.get("outputs", [])}
    _require(
        outputs.get("class") == classes, f"V2 classes {outputs.get('class')} differ from V1 classes {classes}", result
    )

    correct = sum(int(c == y) for c, y in zip(classes, labels, strict=True))
    result["accuracy"] = correct / len(labels)
    _require(
        result["accuracy"] >= threshold,
        f"accuracy {result['accuracy']:.3f} on {len(labels)} test images is below {threshold:.3f}",
        result,
    )
    result["passed"] = True
    return result


# --- the images ------------------------------------------------------------------------------


def parse_idx(blob: bytes, rank: int, count: int, name: str) -> list:
    """The first ``count`` items of a gzipped IDX file: images as 28x28 lists, or labels."""
    dims, data = decode_idx(name, blob, rank)
    if dims[0] < count:
        raise DataValidationError(f"{name}: holds {dims[0]} items, {count} requested")
    if rank == 1:
        return list(data[:count])
    if tuple(dims[1:]) != IMAGE_SHAPE:
        raise DataValidationError(f"{name}: images of {dims[1:]}, expected 28x28")
    rows, side = IMAGE_SHAPE
    size = rows * side
    return [[list(data[i * size + r * side : i * size + (r + 1) * side]) for r in range(rows)] for i in range(count)]


def load_test_images(data_uri: str, count: int, settings: Settings) -> tuple[list, list[int]]:
    """The first ``count`` test images and labels of the IDX files at ``data_uri``."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    folder = store_path(data_uri, settings)
    blobs = {}
    for name in (TEST_IMAGES, TEST_LABELS):
        path = folder / name
        if not path.exists():
            raise DataValidationError(f"no {name} at {data_uri}: cannot pick smoke-test images")
        blobs[name] = path.read_bytes()
    images = parse_idx(blobs[TEST_IMAGES], 3, count, TEST_IMAGES)
    labels = parse_idx(blobs[TEST_LABELS], 1, count, TEST_LABELS)
    return images, labels
