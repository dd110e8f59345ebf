"""The model server against clients that hold its resources: announced bodies that never come,
headers sent one byte at a time, oversized headers, thousands of idle connections, forged log
lines. Real server process with its default limits (limits.py), raw sockets, bounded loops."""

from __future__ import annotations

import os
import socket
import time
import urllib.parse

import inference_models as im
import pytest
from inference_models import call, read_response, request_head

pytestmark = pytest.mark.slow
NAME = "fashion-mnist"
V1 = f"/v1/models/{NAME}:predict"
LIMIT = 4 * 1024 * 1024  # --max-body-bytes default
HEADER_TIMEOUT_S = 10  # --header-timeout-s default
BODY_IDLE_TIMEOUT_S = 10  # --body-idle-timeout-s default
MAX_CONNECTIONS = 512  # --max-connections default


@pytest.fixture(scope="module")
def server(versions, tmp_path_factory):
    port = im.free_port()
    log = tmp_path_factory.mktemp("attacks") / "server.log"
    proc = im.start_server(versions["tensorflow"], port, log_path=log)
    yield port, proc.pid, log
    im.stop_server(proc)


def _predict_ok(port: int) -> bool:
    images, _ = im.real_test_images(1)
    try:
        status, answer = call(port, "POST", V1, {"instances": images}, timeout=20)
    except OSError:  # timed out: the server did not answer
        return False
    return status == 200 and len(answer["predictions"]) == 1


def _closed_with(sock: socket.socket, within_s: float) -> int | None:
    """The status the server answered before closing, None if it said nothing, within ``within_s``."""
    sock.settimeout(within_s)
    try:
        return read_response(sock)[0]
    except AssertionError:  # closed without a response
        return None


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_announced_bodies_that_never_come_do_not_starve_inference(server, framing):
    port, _, _ = server
    attackers = []
    for _ in range(8):  # twice what starved the server when budget was reserved from the announced size
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(request_head(V1, LIMIT if framing == "content-length" else None))
        attackers.append(sock)
    try:
        time.sleep(0.5)  # the server has read every head and started every request
        assert _predict_ok(port), "a normal predict got no answer while announced bodies held the server"
        assert call(port, "GET", "/v2/health/live", timeout=20) == (200, {"live": True})
        # ...and the idle connections are answered 408 and closed once no byte came for the idle timeout.
        assert [_closed_with(sock, BODY_IDLE_TIMEOUT_S + 20) for sock in attackers] == [408] * 8
    finally:
        for sock in attackers:
            sock.close()


def test_a_body_that_stops_gets_408_counted_from_the_end_of_the_headers(server):
    port, _, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request_head(V1, 1000) + b'{"instances": ')
        status, _, body = read_response(sock)
    assert status == 408 and b"no request body byte for 10 s" in body


def test_headers_sent_one_byte_at_a_time_are_cut_off(server):
    port, _, _ = server
    head = request_head(V1, 10) * 10  # longer than the header deadline at this pace
    answer = None
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for byte in head[: HEADER_TIMEOUT_S * 4]:  # 4 bytes a second for 10 s: 40 bytes
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            if _readable(sock, 0.25):
                break
        answer = _closed_with(sock, 20)
    assert answer == 408


def _readable(sock: socket.socket, wait_s: float) -> bool:
    import select

    return bool(select.select([sock], [], [], wait_s)[0])


@pytest.mark.parametrize(
    ("extra", "what"),
    [
        ("X-Big: " + "a" * 1024 * 1024 + "\r\n", "1 MB header"),
        ("".join(f"X-{i}: 1\r\n" for i in range(1000)), "1000 headers"),
    ],
)
def test_oversized_or_too_many_headers_get_431(server, extra, what):
    port, _, _ = server
    request = f"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the whole of it was read
        status = _closed_with(sock, 30)
    assert status == 431, what
    assert call(port, "GET", "/v2/health/live") == (200, {"live": True})


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_many_idle_connections_stay_under_the_cap_and_probes_and_predicts_get_in(server):
    port, pid, _ = server
    baseline = _open_fds(pid)
    held = []
    try:
        for _ in range(MAX_CONNECTIONS + 300):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(b"P")  # the first byte of headers that never end
            held.append(sock)
        time.sleep(0.5)
        fds = _open_fds(pid)
        assert fds <= baseline + MAX_CONNECTIONS + 2, f"{fds} open files with {len(held)} connections held"
        assert call(port, "GET", "/v2/health/live", timeout=20) == (200, {"live": True})
        assert _predict_ok(port)
    finally:
        for sock in held:
            sock.close()


def test_request_text_in_the_log_is_escaped_and_truncated(server):
    port, _, log = server
    forged = "/nope\n2026-01-01 00:00:00,000 ERROR eksml_inference.http FORGED admin login ok\r\x1b[31m\x00"
    path = urllib.parse.quote(forged) + "x" * 5000
    assert call(port, "GET", path)[0] == 404
    lines = log.read_text(errors="replace").splitlines()
    assert not [line for line in lines if line.startswith("2026-01-01 00:00:00,000")], "a forged log line"
    logged = [line for line in lines if "FORGED" in line]
    assert len(logged) == 1, logged
    assert "\\n2026-01-01" in logged[0] and "\\x1b[31m" in logged[0] and "\\x00" in logged[0]
    assert "\x1b" not in logged[0] and "\x00" not in logged[0] and "\r" not in logged[0]
    assert len(logged[0]) < 1000 and "more)" in logged[0]
