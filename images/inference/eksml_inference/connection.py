"""The HTTP connection layer: uvicorn's httptools protocol with a bound on what a connection holds.

uvicorn has a keep-alive timeout and nothing else for this: a client may take forever to send
its headers, send a megabyte of them or 100,000 of them, and open connections until the process
runs out of file descriptors (its ``limit_concurrency`` answers 503 to every request past the
cap, health probes included). This subclass adds, per ``Limits``:

* a header deadline, from the connection's opening (or from the first byte of a keep-alive
  request) to the end of the headers: 408 and close when it passes;
* a cap on the bytes of the request line and headers and on the number of headers: 431 and close;
* a connection cap: at ``max_connections``, a new connection evicts the oldest one still
  sending headers, else the oldest idle between requests, else the body whose last byte came
  longest ago (a probe sends its whole request at once, so it is never the one evicted); when
  every connection is busy being answered, the new one is closed.

Body limits (size, places in memory, time between bytes) are the application's (``app.Request.body``).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .limits import Limits

log = logging.getLogger("eksml_inference.http")

#: Connection phases: waiting for (the rest of) headers, idle between requests, receiving a body,
#: busy (the whole request received, the server answering). Eviction goes in this order; never busy.
HEADERS, IDLE, BODY, BUSY = "headers", "idle", "body", "busy"
EVICTION_ORDER = {HEADERS: 0, IDLE: 1, BODY: 2}


class _Refused(Exception):
    """A limit refused the request while its headers were parsed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """One connection; ``limits`` is set on the subclass ``protocol_class`` makes."""

    limits: Limits = Limits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.phase = HEADERS
        self.phase_since = time.monotonic()
        self._head_bytes = 0
        self._header_count = 0
        self._refused: _Refused | None = None
        self._header_deadline: Any = None

    # --- connection lifetime -------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        others = len(self.connections)
        super().connection_made(transport)
        if others >= self.limits.max_connections and not self._evict_one():
            self.transport.abort()
            return
        self._start_headers()

    def _evict_one(self) -> bool:
        """Close the connection that makes the least use of its place (module doc); False if all are busy."""
        candidates = [c for c in self.connections if c is not self and c.phase != BUSY and not c.transport.is_closing()]
        if not candidates:
            log.warning("connection cap of %d reached with every connection busy", self.limits.max_connections)
            return False
        victim = min(candidates, key=lambda c: (EVICTION_ORDER[c.phase], c.phase_since))
        victim.transport.abort()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _start_headers(self) -> None:
        self.phase, self.phase_since = HEADERS, time.monotonic()
        self._head_bytes = self._header_count = 0
        self._cancel_header_deadline()
        self._header_deadline = self.loop.call_later(self.limits.header_timeout_s, self._headers_too_slow)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.phase == HEADERS and not self.transport.is_closing():
            self._refuse(408, f"request headers not received within {self.limits.header_timeout_s:g} s")

    def _refuse(self, status: int, message: str) -> None:
        """Answer in the protocols' error shape and close (the rest of the request is never read)."""
        body = json.dumps({"error": message}).encode()
        self.transport.write(
            STATUS_LINE[status]
            + b"content-type: application/json\r\ncontent-length: "
            + str(len(body)).encode()
            + b"\r\nconnection: close\r\n\r\n"
            + body
        )
        self.transport.close()

    # --- parsing -------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self.phase == IDLE:  # the first byte of the next request starts its header deadline
            self._start_headers()
        try:
            if self.phase == HEADERS:
                room = self.limits.max_header_bytes - self._head_bytes
                self._head_bytes += len(data)
                if len(data) > room:  # feed what fits; the rest only if the headers ended within it
                    self.parser.feed_data(data[:room])
                    if self.phase == HEADERS:
                        raise _Refused(431, f"request headers exceed {self.limits.max_header_bytes} bytes")
                    data = data[room:]
            self.parser.feed_data(data)
        except _Refused as exc:
            self._refuse(exc.status, str(exc))
        except httptools.HttpParserError as exc:
            refused = self._refused or (exc.__context__ if isinstance(exc.__context__, _Refused) else None)
            if refused is not None:
                self._refuse(refused.status, str(refused))
                return
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade:
            self.send_400_response("Upgrade is not supported.")

    def on_message_begin(self) -> None:
        if self.phase != HEADERS:  # a pipelined request right after the previous one
            self._start_headers()
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            self._refused = _Refused(431, f"more than {self.limits.max_headers} request headers")
            raise self._refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_header_deadline()
        self.phase, self.phase_since = BODY, time.monotonic()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self.phase_since = time.monotonic()  # a body is ranked by its last byte
        super().on_body(body)

    def on_message_complete(self) -> None:
        self.phase = BUSY
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self.phase, self.phase_since = IDLE, time.monotonic()


def protocol_class(limits: Limits) -> type[LimitedHttpToolsProtocol]:
    """The protocol class to give uvicorn's ``Config(http=...)``, bound to ``limits``."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})
