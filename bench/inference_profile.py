"""Where a request's time goes in the model server, stage by stage, in one process.

    .venvs/inference/bin/python bench/inference_profile.py [--model-uri URI] [--repeats 300]

For a V1 JSON request and a V2 binary request at batch 1 and 32 on real test images, times
(p50 and min over ``--repeats``): JSON decoding, conversion to validated pixels, the model
call itself, the model call through the micro-batcher (its thread hop and queue), encoding
the response, and the whole ASGI application called in-process (no sockets). What the HTTP
round trip adds on top is the difference to bench/inference_latency.py's server column.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_latency import DATASET, NAME, default_models  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, float]:
    values = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        values.append(time.perf_counter() - tic)
    values.sort()
    return values[len(values) // 2] * 1000, values[0] * 1000


async def atimed(fn, repeats: int) -> tuple[float, float]:
    values = []
    for _ in range(repeats):
        tic = time.perf_counter()
        await fn()
        values.append(time.perf_counter() - tic)
    values.sort()
    return values[len(values) // 2] * 1000, values[0] * 1000


class Call:
    """One request to the ASGI app without a server: the app's own cost."""

    def __init__(self, app, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.app, self.body = app, body
        self.scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
        self.status = 0

    async def __call__(self) -> None:
        async def receive():
            return {"type": "http.request", "body": self.body, "more_body": False}

        async def send(message):
            if message["type"] == "http.response.start":
                self.status = message["status"]

        await self.app(self.scope, receive, send)
        if self.status != 200:
            raise RuntimeError(f"HTTP {self.status}")


def v2_binary(x: np.ndarray) -> tuple[bytes, int]:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "pixels",
                    "datatype": "UINT8",
                    "shape": list(x.shape),
                    "parameters": {"binary_data_size": x.size},
                }
            ],
            "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in ("class", "label", "probabilities")],
        }
    ).encode()
    return head + x.astype(np.uint8).tobytes(), len(head)


async def profile(uri: str, repeats: int) -> None:
    import orjson

    from eksml_inference import v1, v2
    from eksml_inference.app import InferenceApp, _parse_v1
    from eksml_inference.contract import predictions
    from eksml_inference.predictor import FashionMnistModel
    from trainkit.data import load_fashion_mnist

    _, _, x_test, _ = load_fashion_mnist(DATASET, limit_train=1, limit_test=64)
    model = FashionMnistModel(NAME, uri)
    model.load()
    app = InferenceApp(model)
    print(f"{Path(uri).name} ({model.backend.info.framework})")
    print(f"  {'stage':<46} {'batch 1 p50/min ms':>20} {'batch 32 p50/min ms':>20}")
    rows: dict[str, list[str]] = {}

    def add(stage: str, figures: tuple[float, float]) -> None:
        rows.setdefault(stage, []).append(f"{figures[0]:.3f}/{figures[1]:.3f}")

    for batch in (1, 32):
        x = x_test[:batch]
        body = json.dumps({"instances": x.tolist()}).encode()
        payload = orjson.loads(body)
        pixels, _ = v1.parse_predict(payload, 64)
        probabilities = model.backend.predict(pixels)
        add("V1: JSON decoding (orjson)", timed(lambda: orjson.loads(body), repeats))
        add("V1: lists -> validated float32 pixels", timed(lambda: v1.parse_predict(payload, 64), repeats))
        add("V1: decoding + conversion (the app's step)", timed(lambda: _parse_v1(body, 64), repeats))
        binary, head = v2_binary(x)
        add("V2 binary: decoding + conversion", timed(lambda: v2.parse_infer(binary, str(head), 64), repeats))
        add("model call, direct", timed(lambda: model.backend.predict(pixels), repeats))
        add("model call through the micro-batcher", await atimed(lambda: model.predict(pixels), repeats))

        def encode() -> bytes:
            classes, labels = predictions(probabilities, model.class_names)
            return orjson.dumps(
                v1.predict_response(model.version, classes, labels, probabilities, False),
                option=orjson.OPT_SERIALIZE_NUMPY,
            )

        add("V1: response encoding", timed(encode, repeats))
        add(
            "V1: whole ASGI app, in-process",
            await atimed(
                Call(app, f"/v1/models/{NAME}:predict", body, [(b"content-length", str(len(body)).encode())]), repeats
            ),
        )
        add(
            "V2 binary: whole ASGI app, in-process",
            await atimed(
                Call(
                    app,
                    f"/v2/models/{NAME}/infer",
                    binary,
                    [
                        (b"content-length", str(len(binary)).encode()),
                        (b"inference-header-content-length", str(head).encode()),
                    ],
                ),
                repeats,
            ),
        )
    for stage, figures in rows.items():
        print(f"  {stage:<46} {figures[0]:>20} {figures[1]:>20}", flush=True)
    app.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-uri", action="append", help="model version folder(s); default: the test exports")
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args(argv)
    import logging

    logging.disable(logging.INFO)
    for uri in args.model_uri or default_models():
        asyncio.run(profile(uri, args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
