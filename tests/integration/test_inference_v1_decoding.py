"""The V1 body's fast path (``v1.plain_instances``: simdjson straight to an array) against the
general one (orjson, ``parse_predict``), in the inference image's virtualenv: the same pixels for
every body it takes, the same error for every body it refuses, and the body shapes it must leave
to the general path (where a count of numbers alone would let a malformed body through)."""

from __future__ import annotations

import json

import inference_models as im
import pytest

SCRIPT = r"""
import json, sys
sys.path[:0] = sys.argv[1:3]
import numpy as np, orjson
from eksml_inference import v1
from eksml_inference.app import _parse_v1
from eksml_inference.contract import RequestError

def outcome(fn):
    try:
        pixels = np.asarray(fn())
        return {"pixels": pixels.tolist(), "dtype": str(pixels.dtype)}
    except RequestError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}

def general(body):
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"body is not valid JSON: {exc}") from None
    return v1.parse_predict(payload, 4)[0]

results = {}
for name, text in json.load(sys.stdin).items():
    body = text.encode()
    try:
        fast = v1.plain_instances(body, 4)
        took = fast is not None
    except RequestError:
        took = True
    served = outcome(lambda: _parse_v1(body, 4)[0])
    results[name] = {"took": took, "served": served, "general": outcome(lambda: general(body))}
print(json.dumps(results))
"""

IMAGE = [[(r * 28 + c) % 256 for c in range(28)] for r in range(28)]
ROW = IMAGE[0]


def _with_row(row: list) -> list:
    return [[row, *IMAGE[1:]]]


#: name -> (body, whether the fast path takes it)
BODIES = {
    "two whole-number images": (json.dumps({"instances": [IMAGE, IMAGE]}), True),
    "fractions and exponents": (json.dumps({"instances": [[[v / 2 for v in r] for r in IMAGE]]}), True),
    "pretty-printed": (json.dumps({"instances": [IMAGE]}, indent=2), True),
    "a value above 255": (json.dumps({"instances": _with_row([300, *ROW[1:]])}), True),
    "a negative value": (json.dumps({"instances": _with_row([-1, *ROW[1:]])}), True),
    "an integer past 64 bits": (json.dumps({"instances": _with_row([2**70, *ROW[1:]])}), False),
    # Same count of numbers as a proper image, wrongly shaped: only the general path reads these.
    "a one-number list inside a row": (json.dumps({"instances": _with_row([ROW[0], [ROW[1]], *ROW[2:]])}), False),
    "rows of 27 and 29": (json.dumps({"instances": [[ROW[:27], ROW + [0], *IMAGE[2:]]]}), False),
    "a string": (json.dumps({"instances": _with_row(["1", *ROW[1:]])}), False),
    "a boolean": (json.dumps({"instances": _with_row([True, *ROW[1:]])}), False),
    "a null": (json.dumps({"instances": _with_row([None, *ROW[1:]])}), False),
    "the key twice (the last one counts)": ('{"instances": [[[1]]], "instances": ' + json.dumps([IMAGE]) + "}", False),
    "a bracket in the key": ('{"instances[": ' + json.dumps([IMAGE]) + "}", False),
    "a second key": (json.dumps({"instances": [IMAGE], "signature_name": "serving_default"}), False),
    "named inputs": (json.dumps({"instances": [{"pixels": IMAGE}]}), False),
    "columnar": (json.dumps({"inputs": [IMAGE]}), False),
    "more images than the batch": (json.dumps({"instances": [IMAGE] * 5}), False),
    "no images": (json.dumps({"instances": []}), False),
    "an infinite number": ('{"instances": [[[1e400' + ",0" * 27 + "]" + ("," + json.dumps(ROW)) * 27 + "]]}", False),
    "cut short": ('{"instances": [[[1, 2', False),
    "empty": ("", False),
}


@pytest.fixture(scope="module")
def results() -> dict:
    return im.server_code_json(SCRIPT, json.dumps({name: body for name, (body, _) in BODIES.items()}))


@pytest.mark.parametrize("name", list(BODIES))
def test_the_fast_path_takes_only_regular_bodies_and_answers_as_the_general_path(results, name):
    result = results[name]
    assert result["took"] is BODIES[name][1]
    assert result["served"] == result["general"]


def test_what_the_fast_path_takes_is_float32_pixels_and_what_is_wrong_is_still_explained(results):
    assert results["two whole-number images"]["served"]["dtype"] == "float32"
    assert results["two whole-number images"]["served"]["pixels"] == [IMAGE, IMAGE]
    assert "0..255" in results["a value above 255"]["served"]["error"]
    assert "must be numbers, got strings" in results["a string"]["served"]["error"]
    assert "equally sized nested lists" in results["rows of 27 and 29"]["served"]["error"]
    assert "equally sized nested lists" in results["a one-number list inside a row"]["served"]["error"]
    assert "at most 4" in results["more images than the batch"]["served"]["error"]
