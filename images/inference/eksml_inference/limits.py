"""Every resource a client can hold on the model server, with its bound (one home for the defaults).

A client holds a connection (a file descriptor), the time it takes to send its headers, the
bytes of those headers, the time between the bytes of its body, and the bytes of its body in
memory. Each has a limit here; ``server.py`` exposes them as flags and docs/operations.md lists them.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Longest text of a request (path, method, message quoting it) written to one log line.
LOG_FIELD_CHARS = 200


@dataclass(frozen=True)
class Limits:
    #: Largest request body (after decompression); larger gets 413 before it is read.
    max_body_bytes: int = 4 * 1024 * 1024
    #: Bodies past ``body_allowance_bytes`` in memory at once (so at most this x ``max_body_bytes``);
    #: a request takes one of these places when its bytes pass the allowance, never from the size
    #: its headers announce, and keeps it to its end, so a body that has a place always completes.
    large_bodies: int = 4
    #: The bytes of a body that need no place: the transport reads that much per connection anyway
    #: (uvicorn pauses reading at 64 KiB), bounded by ``max_connections``, so a small request
    #: never waits behind large ones.
    body_allowance_bytes: int = 64 * 1024
    #: From a connection's opening (or the first byte of a keep-alive request) to the end of its headers.
    header_timeout_s: float = 10.0
    #: Request line plus headers.
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100
    #: Longest wait for the next body byte, counted from the end of the headers.
    body_idle_timeout_s: float = 10.0
    #: Whole body, counted from the end of the headers.
    body_timeout_s: float = 30.0
    #: Open connections; at the cap a new one evicts the oldest connection still sending headers,
    #: else the oldest idle between requests, else the one whose body last sent a byte longest ago:
    #: health probes still get in.
    max_connections: int = 512
    #: Liveness fails once a model call has waited or run this long: the server cannot serve.
    stall_s: float = 30.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")


def loggable(text: str, limit: int = LOG_FIELD_CHARS) -> str:
    """``text`` safe for one log line: control and non-printable characters escaped, at most ``limit`` characters.

    A request path carrying ``%0a`` or ``%1b`` must not forge a log line or reach a terminal.
    """
    escaped = text.encode("unicode_escape").decode("ascii") if not text.isprintable() or "\\" in text else text
    if len(escaped) > limit:
        return f"{escaped[: limit - 20]}...({len(escaped) - limit + 20} more)"
    return escaped
