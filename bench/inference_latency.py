"""What the model server costs: latency and throughput of the local server vs the model in-process.

    .venvs/inference/bin/python bench/inference_latency.py [--model-uri URI ...] [--requests 200]

For each model version: the same real test images are classified (a) by the loaded model
called in this process and (b) through the server over a kept-alive HTTP connection on
127.0.0.1, as V1 JSON and as V2 with binary tensor data, at batch 1 and batch 32, one request
at a time, the in-process row measured right before its server row; then (c) batch 1 from 8
concurrent clients, where the server's micro-batching groups requests. Prints p50/p99 latency,
requests/s and images/s, and the server/in-process ratio. Bounded: ``--requests`` per row and
``--max-seconds`` per row. Default models: the cached test exports of tests/integration.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [
    str(ROOT / "images" / "inference"),
    str(ROOT / "images" / "common"),
    str(ROOT / "tests" / "integration"),
    str(ROOT / "plugins"),
]
NAME = "fashion-mnist"
DATASET = "/usr/share/datasets/fashion-mnist"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def summarize(latencies: list[float], wall: float, batch: int) -> dict[str, float]:
    return {
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "rps": len(latencies) / wall,
        "images_s": len(latencies) * batch / wall,
        "n": len(latencies),
    }


def timed_loop(fn, requests: int, max_seconds: float) -> tuple[list[float], float]:
    latencies, start = [], time.perf_counter()
    for _ in range(requests):
        tic = time.perf_counter()
        fn()
        latencies.append(time.perf_counter() - tic)
        if time.perf_counter() - start > max_seconds:
            break
    return latencies, time.perf_counter() - start


class Client:
    """One kept-alive HTTP connection posting a prepared body (V1 JSON or V2 binary)."""

    def __init__(self, port: int, request: tuple[str, bytes, dict[str, str]]) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.path, self.body, self.headers = request

    def __call__(self) -> None:
        self.conn.request("POST", self.path, self.body, self.headers)
        response = self.conn.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {payload[:200]!r}")


def v1_json(images) -> tuple[str, bytes, dict[str, str]]:
    body = json.dumps({"instances": images.tolist()}).encode()
    return f"/v1/models/{NAME}:predict", body, {"Content-Type": "application/json"}


def v2_binary(images) -> tuple[str, bytes, dict[str, str]]:
    """Open Inference Protocol with the binary tensor data extension (uint8 pixels in, float32 out)."""
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "pixels",
                    "datatype": "UINT8",
                    "shape": list(images.shape),
                    "parameters": {"binary_data_size": images.size},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return (
        f"/v2/models/{NAME}/infer",
        head + images.astype("uint8").tobytes(),
        {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))},
    )


PROTOCOLS = {"V1 JSON": v1_json, "V2 binary": v2_binary}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(uri: str, port: int, max_latency_ms: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "images" / "common"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "serve.py",
            "--model-uri",
            uri,
            "--host",
            "127.0.0.1",
            "--http-port",
            str(port),
            "--max-latency-ms",
            str(max_latency_ms),
        ],
        cwd=ROOT / "images" / "inference",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server for {uri} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models/{NAME}", timeout=2):
                return proc
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise RuntimeError("server not ready after 300 s")


def bench_model(
    uri: str, requests: int, max_seconds: float, clients: int, max_latency_ms: float
) -> list[tuple[str, dict, dict | None]]:
    import numpy as np

    from eksml_inference.backends import load_backend
    from trainkit.data import load_fashion_mnist

    _, _, x_test, _ = load_fashion_mnist(DATASET, limit_train=1, limit_test=64)
    backend = load_backend(uri)
    rows = []
    port = free_port()
    server = start_server(uri, port, max_latency_ms)
    try:
        for batch in (1, 32):
            pixels = x_test[:batch].astype(np.float32)
            for _ in range(5):
                backend.predict(pixels)
            for protocol, encode in PROTOCOLS.items():
                # In-process and server rows alternate, so both see the same machine load.
                local = summarize(*timed_loop(lambda x=pixels: backend.predict(x), requests, max_seconds), batch)
                client = Client(port, encode(x_test[:batch]))
                for _ in range(5):
                    client()
                remote = summarize(*timed_loop(client, requests, max_seconds), batch)
                rows.append((f"batch {batch:>2}, 1 client, {protocol}", local, remote))
        # Concurrent single-image requests: the micro-batcher groups them into shared model calls.
        per_client = max(1, requests // clients)
        for protocol, encode in PROTOCOLS.items():
            request = encode(x_test[:1])
            with concurrent.futures.ThreadPoolExecutor(clients) as pool:
                start = time.perf_counter()
                parts = list(
                    pool.map(
                        lambda _, r=request: timed_loop(Client(port, r), per_client, max_seconds)[0], range(clients)
                    )
                )
                wall = time.perf_counter() - start
            rows.append(
                (f"batch  1, {clients} clients, {protocol}", None, summarize([x for p in parts for x in p], wall, 1))
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
    return rows


def default_models() -> list[str]:
    import inference_models

    return [
        str(inference_models.trained_model(f))
        for f in ("tensorflow", "mxnet")
        if not inference_models.missing_venvs(inference_models.TRAINING[f][0])
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-uri", action="append", help="model version folder(s); default: the test exports")
    parser.add_argument("--requests", type=int, default=200, help="requests per row (bounded by --max-seconds)")
    parser.add_argument("--max-seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-latency-ms", type=float, default=0.0, help="the server's micro-batching wait")
    args = parser.parse_args(argv)
    import logging

    logging.disable(logging.INFO)
    models = args.model_uri or default_models()
    print(
        f"{'model':<34} {'row':<31} {'in-process p50/p99 ms':>22} {'server p50/p99 ms':>19} "
        f"{'in-proc req/s':>13} {'server req/s':>12} {'server img/s':>12} {'p50 ratio':>9} {'p50 overhead':>12}"
    )
    for uri in models:
        framework = json.loads(Path(uri.removeprefix("file://"), "metrics.json").read_text())["framework"]
        label = f"{Path(uri).name[:24]} ({framework})"
        for row, local, remote in bench_model(uri, args.requests, args.max_seconds, args.clients, args.max_latency_ms):
            local_lat = f"{local['p50_ms']:.2f}/{local['p99_ms']:.2f}" if local else "-"
            local_rps = f"{local['rps']:.0f}" if local else "-"
            ratio = f"{remote['p50_ms'] / local['p50_ms']:.2f}x" if local else "-"
            overhead = f"{remote['p50_ms'] - local['p50_ms']:+.2f} ms" if local else "-"
            print(
                f"{label:<34} {row:<31} {local_lat:>22} {remote['p50_ms']:>8.2f}/{remote['p99_ms']:<10.2f}"
                f"{local_rps:>13} {remote['rps']:>12.0f} {remote['images_s']:>12.0f} {ratio:>9} {overhead:>12}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
