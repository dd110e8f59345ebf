"""What clients that hold the model server's resources cost a normal client and the liveness probe.

    .venvs/inference/bin/python bench/inference_attacks.py [--model-uri URI] [--server-dir DIR] [--seconds 15]

For each attack (none, announced bodies that never come, slow headers, idle connections,
oversized headers, large bodies that stall), starts it against a fresh server and, while it
runs, sends one-image V1 predicts one after another and asks ``/v2/health/live`` every 200 ms,
each with a 5 s timeout. Prints the normal client's p50/p99 and failures, the liveness probe's
p50/max and failures, and the most files the server had open. ``--server-dir`` runs another copy of
``images/inference`` (e.g. ``git archive main images/inference | tar -x -C /tmp/old``) to
compare. Figures only; tests/integration/test_inference_attacks.py asserts the behaviour.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_latency import NAME, ROOT, free_port, percentile  # noqa: E402

V1 = f"/v1/models/{NAME}:predict"
BODY = 4 * 1024 * 1024
TIMEOUT_S = 5.0


def start(server_dir: Path, uri: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "images" / "common"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(
        [sys.executable, "serve.py", "--model-uri", uri, "--host", "127.0.0.1", "--http-port", str(port)],
        cwd=server_dir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    for _ in range(600):  # 300 s
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("server not ready after 300 s")


def head(length: int | None, extra: str = "") -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return f"POST {V1} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n{extra}\r\n".encode()


class Attack:
    """Connections opened by ``open_one``, kept open (and fed by ``tick`` once a second) until stopped."""

    def __init__(self, count: int, open_one: Callable[[int], socket.socket | None], tick=None) -> None:
        self.count, self.open_one, self.tick = count, open_one, tick
        self.socks: list[socket.socket] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for i in range(self.count):
            if self.stopped.is_set():
                return
            try:
                sock = self.open_one(i)
            except OSError:
                continue
            if sock is not None:
                self.socks.append(sock)
        ticks = 0
        while self.tick and not self.stopped.wait(1.0):
            ticks += 1
            for sock in list(self.socks):
                try:
                    self.tick(sock, ticks)
                except OSError:
                    self.socks.remove(sock)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(30)
        for sock in self.socks:
            sock.close()


def _connect() -> socket.socket:
    return socket.create_connection(("127.0.0.1", PORT[0]), timeout=10)


PORT = [0]


def announced(framing: str) -> Callable[[int], socket.socket]:
    def open_one(_: int) -> socket.socket:
        sock = _connect()
        sock.sendall(head(BODY if framing == "content-length" else None))
        return sock

    return open_one


#: A valid request head that never ends, sent one byte a second.
SLOW_HEAD = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100_000


def slow_headers(_: int) -> socket.socket:
    sock = _connect()
    sock.sendall(SLOW_HEAD[:1])
    return sock


def next_header_byte(sock: socket.socket, tick: int) -> None:
    sock.send(SLOW_HEAD[tick : tick + 1])


def idle(_: int) -> socket.socket:
    return _connect()


def big_headers(_: int) -> None:
    """1 MB of headers, sent again and again (bytes, not connections)."""
    with _connect() as sock:
        try:
            sock.sendall(head(2, "X-Big: " + "a" * 1024 * 1024 + "\r\n") + b"{}")
            sock.recv(1024)
        except OSError:
            pass
    return None


def stalled_large_body(_: int) -> socket.socket:
    sock = _connect()
    sock.sendall(head(BODY) + b" " * (128 * 1024))
    return sock


def measure(port: int, pid: int, seconds: float) -> dict:
    images = [[[0] * 28] * 28]
    body = json.dumps({"instances": images}).encode()
    predicts: list[float] = []
    lives: list[float] = []
    failures = {"predict": 0, "live": 0}
    open_files = [0]
    end = time.monotonic() + seconds

    def probe() -> None:
        while time.monotonic() < end:
            open_files[0] = max(open_files[0], len(os.listdir(f"/proc/{pid}/fd")))
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/live", timeout=TIMEOUT_S) as r:
                    r.read()
                lives.append(time.perf_counter() - t)
            except OSError:
                failures["live"] += 1
            time.sleep(0.2)

    prober = threading.Thread(target=probe)
    prober.start()
    while time.monotonic() < end:
        t = time.perf_counter()
        request = urllib.request.Request(f"http://127.0.0.1:{port}{V1}", data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as r:
                r.read()
            predicts.append(time.perf_counter() - t)
        except OSError:
            failures["predict"] += 1
    prober.join()
    ms = 1000.0
    return {
        "predict_ok": len(predicts),
        "predict_failed": failures["predict"],
        "predict_p50_ms": round(percentile(predicts, 50) * ms, 1) if predicts else None,
        "predict_p99_ms": round(percentile(predicts, 99) * ms, 1) if predicts else None,
        "live_ok": len(lives),
        "live_failed": failures["live"],
        "live_p50_ms": round(percentile(lives, 50) * ms, 1) if lives else None,
        "live_max_ms": round(max(lives) * ms, 1) if lives else None,
        "server_open_files_max": open_files[0],
    }


ATTACKS: dict[str, tuple[int, Callable, Callable | None]] = {
    "none": (0, idle, None),
    "4 announced 4 MiB bodies (Content-Length), nothing sent": (4, announced("content-length"), None),
    "4 announced chunked bodies, nothing sent": (4, announced("chunked"), None),
    "64 announced 4 MiB bodies (Content-Length)": (64, announced("content-length"), None),
    "2000 slow-header connections (1 byte/s)": (2000, slow_headers, next_header_byte),
    "5000 slow-header connections (1 byte/s)": (5000, slow_headers, next_header_byte),
    "2000 idle connections": (2000, idle, None),
    "200 requests with 1 MB of headers": (200, big_headers, None),
    "8 large bodies stalled after 128 KiB": (8, stalled_large_body, None),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-uri", default=None, help="model version folder; default: the test TensorFlow export")
    parser.add_argument("--server-dir", type=Path, default=ROOT / "images" / "inference")
    parser.add_argument("--seconds", type=float, default=15.0, help="measurement per attack")
    parser.add_argument("--only", action="append", help="run only attacks whose name contains this")
    args = parser.parse_args(argv)
    if args.model_uri is None:
        sys.path.insert(0, str(ROOT / "tests" / "integration"))
        import inference_models

        args.model_uri = str(inference_models.trained_model("tensorflow"))
    for name, (count, open_one, tick) in ATTACKS.items():
        if args.only and not any(part in name for part in args.only):
            continue
        PORT[0] = port = free_port()
        proc = start(args.server_dir, args.model_uri, port)
        attack = Attack(count, open_one, tick)
        try:
            attack.thread.start()
            time.sleep(2.0 if count < 100 else 0.5)  # the attack's connections are in place (most of them)
            row = measure(port, proc.pid, args.seconds)
        finally:
            attack.stop()
            proc.terminate()
            proc.wait(30)
        print(json.dumps({"attack": name, **row}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
