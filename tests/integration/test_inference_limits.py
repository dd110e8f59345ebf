"""The model server under oversized and slow requests: refused before they are read, memory
bounded, health checks answered meanwhile. Real server process, raw sockets (the client must
be able to keep sending after the server answered, which HTTP libraries do not allow)."""

from __future__ import annotations

import concurrent.futures
import json
import select
import socket
from pathlib import Path

import inference_models as im
import pytest
from inference_models import call

pytestmark = pytest.mark.slow
NAME = "fashion-mnist"
V1 = f"/v1/models/{NAME}:predict"
LIMIT = 4 * 1024 * 1024  # the server's default --max-body-bytes


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def server(versions, tmp_path_factory):
    port = im.free_port()
    proc = im.start_server(versions["tensorflow"], port, log_path=tmp_path_factory.mktemp("limits") / "server.log")
    yield port, proc.pid
    im.stop_server(proc)


def _answered(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def test_a_declared_oversized_body_gets_413_before_it_is_sent(server):
    port, pid = server
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(im.request_head(V1, 155_000_000) + b'{"instances": [' + b"[[0]]," * 10_000)
        # The server answers with 154.9 MB still unsent: it never waited for them.
        status, headers, body = im.read_response(sock)
    assert status == 413, body
    assert headers["connection"] == "close"
    assert "exceeds this server's limit of 4194304 bytes" in json.loads(body)["error"]
    assert call(port, "GET", "/v2/health/live") == (200, {"live": True})


def test_a_chunked_body_is_refused_once_it_passes_the_limit(server):
    port, _ = server
    chunk = b" " * (256 * 1024)
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(im.request_head(V1, None) + b"1\r\n{\r\n")
        while not _answered(sock) and sent < 40 * LIMIT:
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        status, _, body = im.read_response(sock)
    assert status == 413, body
    assert sent < 4 * LIMIT, f"{sent} bytes sent before the refusal"  # socket buffers, not the whole body


def test_oversized_requests_leave_memory_bounded_and_liveness_answering(server):
    port, pid = server
    before = peak_rss_mb(pid)

    def oversized(_: int) -> int:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(im.request_head(V1, 200_000_000) + b"{" + b" " * (1024 * 1024))
            return im.read_response(sock)[0]

    def chunked_near_limit(_: int) -> int:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(im.request_head(V1, None))
            part = b"[" * 1024  # nesting that JSON parsers must allocate for
            for _ in range((LIMIT - 1024) // len(part)):
                sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
            return im.read_response(sock)[0]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        refused = pool.map(oversized, range(8))
        parsed = pool.map(chunked_near_limit, range(8))
        live = [call(port, "GET", "/v2/health/live")[0] for _ in range(5)]
        assert list(refused) == [413] * 8
        assert list(parsed) == [400] * 8
    assert live == [200] * 5
    growth = peak_rss_mb(pid) - before
    print(f"peak RSS {before:.0f} -> {before + growth:.0f} MB under 8 oversized and 8 near-limit bodies at once")
    # Bodies in memory are capped at 4 x the body limit (16 MiB), one large body is decoded at a time.
    assert growth < 160, f"peak RSS grew by {growth:.0f} MB"


def test_health_checks_answer_while_a_large_allowed_request_is_in_flight(server):
    port, _ = server
    images, _ = im.real_test_images(64)
    body = json.dumps({"instances": images}).encode()[:-1] + b" " * (3 * 1024 * 1024) + b"}"
    assert len(body) < LIMIT
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(im.request_head(V1, len(body)) + body[: len(body) // 2])
        assert call(port, "GET", "/v2/health/live") == (200, {"live": True})
        assert call(port, "GET", "/v2/health/ready") == (200, {"ready": True})
        sock.sendall(body[len(body) // 2 :])
        status, _, answer = im.read_response(sock)
    assert status == 200, answer
    assert len(json.loads(answer)["predictions"]) == 64
