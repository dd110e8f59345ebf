"""The model server's micro-batcher (``eksml_inference.batching``) in the inference image's
virtualenv, with a model that takes 50 ms a call and records each call's rows: a lone request is a
call of its own, what arrives while the model runs forms the next batch, a model error reaches its
caller and the batcher goes on, and liveness sees a call in progress. (The server tests check
batching through HTTP on the ONNX server, which waits 50 ms for company; this is the default,
no wait.)"""

from __future__ import annotations

import inference_models as im
import pytest

SCRIPT = r"""
import asyncio, json, sys, time
sys.path[:0] = sys.argv[1:3]
import numpy as np
from eksml_inference.batching import MicroBatcher

calls = []

def predict(pixels):
    if (pixels < 0).any():
        raise RuntimeError("model failed")
    time.sleep(0.05)
    calls.append(len(pixels))
    return pixels[:, 0, 0] * 2

def image(value):
    return np.full((1, 28, 28), value, dtype=np.float32)

async def main():
    out = {}
    batcher = MicroBatcher(predict, max_batch_size=8, max_latency_ms=0)
    out["lone"] = (await batcher.submit(image(1))).tolist()
    out["lone calls"] = list(calls)
    calls.clear()

    async def later(value, delay):
        await asyncio.sleep(delay)
        return (await batcher.submit(image(value))).tolist()

    # The first request is alone; five more come while its call runs.
    first = asyncio.ensure_future(batcher.submit(image(10)))
    await asyncio.sleep(0.01)
    stalled = batcher.stalled_for()
    rest = await asyncio.gather(*(later(v, 0.005 * i) for i, v in enumerate(range(11, 16))))
    out["concurrent"] = [(await first).tolist(), *rest]
    out["concurrent calls"] = list(calls)
    out["stalled during a call"] = stalled
    out["stalled after"] = batcher.stalled_for()
    calls.clear()

    try:
        await batcher.submit(image(-1))
        out["error"] = None
    except RuntimeError as exc:
        out["error"] = str(exc)
    out["after the error"] = [(await batcher.submit(image(v))).tolist() for v in (3, 4)]
    out["sequential calls"] = list(calls)
    batcher.close()
    print(json.dumps(out))

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def run() -> dict:
    return im.server_code_json(SCRIPT)


def test_a_lone_request_is_one_model_call_of_its_own(run):
    assert run["lone"] == [2.0] and run["lone calls"] == [1]


def test_what_arrives_while_the_model_runs_forms_the_next_batch(run):
    assert run["concurrent"] == [[20.0], [22.0], [24.0], [26.0], [28.0], [30.0]]
    assert run["concurrent calls"] == [1, 5]


def test_liveness_sees_the_call_in_progress_and_not_after(run):
    assert run["stalled during a call"] > 0 and run["stalled after"] == 0


def test_a_model_error_reaches_its_caller_and_the_batcher_goes_on(run):
    assert run["error"] == "model failed"
    assert run["after the error"] == [[6.0], [8.0]] and run["sequential calls"] == [1, 1]
