"""What an oversized request costs the model server: time to refuse it, memory, and liveness meanwhile.

    .venvs/inference/bin/python bench/inference_oversized.py [--model-uri URI] [--images 100000]

Starts the server on a real model version, then posts a V1 body of ``--images`` real test
images (100,000 are about 155 MB of JSON) over a raw socket while another thread asks
``/v2/health/live`` every 50 ms. Prints the time from the first byte sent to the status line,
the status, how much of the body had been sent by then, the server's peak RSS (``VmHWM``)
before and after, and the slowest liveness answer during the request. Then the same for a
body of spaces (``--spaces-mb``), and for an allowed body that is as costly to decode as one
under the default limit can be. Figures only; the tests assert the behaviour.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_latency import DATASET, NAME, default_models, free_port, start_server  # noqa: E402


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def post_raw(port: int, path: str, body: bytes, chunk: int = 1 << 20) -> tuple[int, float, int, bytes]:
    """Send ``body`` in chunks while reading; return (status, seconds to status line, bytes sent, reply)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=300)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    reply = bytearray()
    answered = threading.Event()
    times: dict[str, float] = {}

    def reader() -> None:
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            if not reply:
                times["status"] = time.perf_counter()
            reply.extend(data)
            if b"\r\n\r\n" in reply:
                answered.set()
        answered.set()

    thread = threading.Thread(target=reader, daemon=True)
    start = time.perf_counter()
    thread.start()
    sent = 0
    try:
        sock.sendall(head)
        view = memoryview(body)
        while sent < len(body) and not answered.is_set():
            sock.sendall(view[sent : sent + chunk])
            sent += min(chunk, len(body) - sent)
    except OSError:  # the server closed the connection after refusing
        pass
    answered.wait(300)
    thread.join(5)
    sock.close()
    status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else 0
    return status, times.get("status", time.perf_counter()) - start, sent, bytes(reply)


def probe(port: int, pid: int, body: bytes, label: str) -> None:
    stop = threading.Event()
    slowest = [0.0, 0]

    def liveness() -> None:
        while not stop.is_set():
            tic = time.perf_counter()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/live", timeout=120) as r:
                    r.read()
            except OSError:
                pass
            slowest[0] = max(slowest[0], time.perf_counter() - tic)
            slowest[1] += 1
            time.sleep(0.05)

    before = peak_rss_mb(pid)
    watcher = threading.Thread(target=liveness, daemon=True)
    watcher.start()
    status, seconds, sent, reply = probe_body = post_raw(port, f"/v1/models/{NAME}:predict", body)
    stop.set()
    watcher.join(130)
    message = reply.split(b"\r\n\r\n", 1)[-1][:120].decode(errors="replace")
    print(
        f"{label:<28} {len(body) / 1e6:>8.1f} MB  status {status}  answered after {seconds * 1000:>9.1f} ms "
        f"with {sent / 1e6:>7.1f} MB sent  peak RSS {before:>7.0f} -> {peak_rss_mb(pid):>7.0f} MB  "
        f"slowest liveness {slowest[0] * 1000:>8.1f} ms ({slowest[1]} probes)  {message!r}",
        flush=True,
    )
    del probe_body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-uri", default=None, help="model version folder; default: the test TensorFlow export")
    parser.add_argument("--images", type=int, default=100_000, help="real test images in the body (cycled)")
    parser.add_argument("--spaces-mb", type=int, default=200)
    args = parser.parse_args(argv)
    uri = args.model_uri or default_models()[0]
    from trainkit.data import load_fashion_mnist

    _, _, x_test, _ = load_fashion_mnist(DATASET, limit_train=1, limit_test=1000)
    real = [json.dumps(image.tolist(), separators=(",", ":")) for image in x_test]
    images_body = ('{"instances":[' + ",".join(real[i % len(real)] for i in range(args.images)) + "]}").encode()
    spaces_body = b"{" + b" " * (args.spaces_mb * 1_000_000) + b"}"
    # Allowed (under the default 4 MiB limit) but as costly to decode as such a body gets:
    # 64 images plus ~1.9 million numbers in a field the server ignores.
    allowed_body = (
        '{"instances":[' + ",".join(real[:64]) + '],"padding":[' + ",".join(["0"] * 1_900_000) + "]}"
    ).encode()
    port = free_port()
    server = start_server(uri, port, 0.0)
    try:
        print(f"server pid {server.pid}, model {uri}")
        probe(port, server.pid, images_body, f"{args.images} images")
        probe(port, server.pid, spaces_body, f"{args.spaces_mb} MB of spaces")
        probe(port, server.pid, allowed_body, "allowed, costly to decode")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/live", timeout=60) as r:
            print(f"liveness afterwards: HTTP {r.status}")
    finally:
        server.terminate()
        server.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
