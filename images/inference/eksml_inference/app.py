"""The HTTP application of the model server: a plain ASGI app, run by uvicorn (httptools, uvloop).

Only the serving surface exists: health, model metadata and status, inference over TF
Serving's REST API (``v1.py``) and the Open Inference Protocol (``v2.py``), and ``/metrics``.
There is no model repository (load/unload), no docs and no OpenAPI schema: whoever reaches
the port can ask for predictions and nothing else.

Hostile input is refused before it costs anything:

* a body larger than ``max_body_bytes`` gets 413 from its ``Content-Length`` before one byte
  of it is read (``Connection: close``), or as soon as a chunked body passes the limit; a
  compressed body is refused as soon as its decompressed size does;
* bodies in memory at once are bounded as bytes arrive (never from what a header announces):
  a body needs one of ``large_bodies`` places once its bytes pass ``body_allowance_bytes``; it
  waits for one (unread; the client is flow-controlled) and gets 503 if none frees up before
  its deadline;
* a body whose next byte takes longer than ``body_idle_timeout_s``, or that is not complete
  ``body_timeout_s`` after the end of the headers, gets 408;
* a body larger than ``inline_parse_bytes`` is decoded in a worker thread, so health checks
  and small requests keep being answered meanwhile.

Header time, size and count and the connection cap are the connection layer's (``connection.py``);
every limit and its default is in ``limits.py``. Request text written to the log goes through
``loggable`` (escaped, truncated).

Errors are ``{"error": "<one line>"}`` (the shape of both protocols), logged at INFO without a
traceback for 4xx; only a 5xx (a server fault) is logged with its traceback. ``/metrics``
counts requests by route, method and status code and has a latency histogram per route.

Why not KServe's ModelServer, which this server replaced: on the serving port it answered the model
repository's unload (and nothing could load the model back), served docs and OpenAPI, and parsed a
whole body before any limit applied (a 228 MB body: 27 s with liveness stalled, 3.3 GB RSS). What
is left is a thin layer over uvicorn; the protocols' own code is in ``v1.py`` and ``v2.py``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from . import v1, v2
from .contract import BodyTooLarge, MethodNotAllowed, NotFound, RequestError, predictions
from .limits import Limits, loggable
from .predictor import FashionMnistModel

log = logging.getLogger("eksml_inference.http")

#: Bodies smaller than this are decoded on the event loop (a thread hop costs more than they do).
DEFAULT_INLINE_PARSE_BYTES = 256 * 1024
SERVER_NAME = "eksml-inference"

REQUESTS = Counter("eksml_http_requests", "HTTP requests by route, method and status code", ["route", "method", "code"])
LATENCY = Histogram(
    "eksml_http_request_duration_seconds",
    "Time from request to response, by route",
    ["route"],
    buckets=(0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0, 2.0, 4.0, 8.0),
)
REJECTED = Counter("eksml_rejected_requests", "Requests refused before the model ran", ["reason"])

JSON = b"application/json"


class ClientGone(Exception):
    """The client disconnected before its request was read."""


class BodyTimeout(RequestError):
    status = 408


class UnsupportedEncoding(RequestError):
    status = 415


class BufferFull(RequestError):
    status = 503


@dataclass
class Response:
    status: int
    body: bytes
    content_type: bytes = JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()


def json_response(value: Any, status: int = 200) -> Response:
    return Response(status, orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY))


class Request:
    """One HTTP request: its route parameters, headers and (on demand) its body."""

    def __init__(
        self, app: InferenceApp, scope: dict[str, Any], receive: Callable[[], Awaitable[dict]], params: dict[str, str]
    ) -> None:
        self.app, self.scope, self._receive, self.params = app, scope, receive, params
        self.headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.holds_place = False  # one of the app's large_bodies places
        self.body_read = False
        self.started = time.monotonic()  # the task starts when the headers end

    def has_body(self) -> bool:
        return self.headers.get("content-length", "0") != "0" or "transfer-encoding" in self.headers

    async def _next(self, deadline: float) -> dict:
        """The next body message, within ``body_idle_timeout_s`` and the body's deadline."""
        limits = self.app.limits
        wait = min(limits.body_idle_timeout_s, deadline - time.monotonic())
        try:
            async with asyncio.timeout(max(wait, 0)):
                message = await self._receive()
        except TimeoutError:
            if wait < limits.body_idle_timeout_s:
                raise BodyTimeout(f"request body not received within {limits.body_timeout_s:g} s") from None
            raise BodyTimeout(f"no request body byte for {limits.body_idle_timeout_s:g} s") from None
        if message["type"] == "http.disconnect":
            raise ClientGone()
        return message

    async def _take_place(self, deadline: float) -> None:
        """A large-body place, once the bytes received pass the allowance."""
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0)):
                await self.app.large_bodies.acquire()
        except TimeoutError:
            raise BufferFull(
                f"all {self.app.limits.large_bodies} places for bodies over "
                f"{self.app.limits.body_allowance_bytes} bytes stayed taken; try again"
            ) from None
        self.holds_place = True

    async def body(self) -> bytes:
        limits = self.app.limits
        limit = limits.max_body_bytes
        length = self.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise RequestError(f"Content-Length {length[:40]!r} is not a number")
            if int(length) > limit:
                raise BodyTooLarge(f"request body of {int(length)} bytes exceeds this server's limit of {limit} bytes")
        deadline = self.started + limits.body_timeout_s
        chunks, total = [], 0
        while True:
            message = await self._next(deadline)
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                raise BodyTooLarge(f"request body exceeds this server's limit of {limit} bytes")
            if total > limits.body_allowance_bytes and not self.holds_place:
                await self._take_place(deadline)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        self.body_read = True
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        encoding = self.headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("", "identity"):
            return body
        return self._decompress(body, encoding, limit)

    @staticmethod
    def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
        """gzip or deflate (as tritonclient sends them), refused once the output passes the limit."""
        if encoding not in ("gzip", "deflate"):
            raise UnsupportedEncoding(f"Content-Encoding {encoding[:40]!r} is not supported (gzip, deflate)")
        inflater = zlib.decompressobj(zlib.MAX_WBITS | (16 if encoding == "gzip" else 0))
        try:
            out = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            raise RequestError(f"body is not valid {encoding} data: {exc}") from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise BodyTooLarge(f"decompressed request body exceeds this server's limit of {limit} bytes")
        return out

    async def decode(self, body: bytes, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(body, *args)``, in the parse thread when the body is large."""
        if len(body) <= self.app.inline_parse_bytes:
            return fn(body, *args)
        return await asyncio.get_running_loop().run_in_executor(self.app.parser, fn, body, *args)


Handler = Callable[[Request], Awaitable[Response]]
_MODEL = r"(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"


class InferenceApp:
    """ASGI application serving ``model`` over V1 and V2."""

    def __init__(
        self,
        model: FashionMnistModel,
        limits: Limits | None = None,
        inline_parse_bytes: int = DEFAULT_INLINE_PARSE_BYTES,
        access_log: bool = False,
    ) -> None:
        self.model = model
        self.limits = limits or Limits()
        self.large_bodies = asyncio.Semaphore(self.limits.large_bodies)
        self.inline_parse_bytes = inline_parse_bytes
        self.access_log = access_log
        self.parser = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse")
        get, post = ("GET", "HEAD"), ("POST",)
        routes: list[tuple[str, str, tuple[str, ...], Handler]] = [
            ("/v2/health/live", "/v2/health/live", get, self.live),
            ("/v2/health/ready", "/v2/health/ready", get, self.ready),
            ("/v2", "/v2", get, self.server_metadata),
            (f"/v2/models/{_MODEL}", "/v2/models/{name}", get, self.v2_metadata),
            (f"/v2/models/{_MODEL}/ready", "/v2/models/{name}/ready", get, self.v2_model_ready),
            (f"/v2/models/{_MODEL}/infer", "/v2/models/{name}/infer", post, self.v2_infer),
            (f"/v1/models/{_MODEL}", "/v1/models/{name}", get, self.v1_status),
            (f"/v1/models/{_MODEL}/metadata", "/v1/models/{name}/metadata", get, self.v1_metadata),
            (f"/v1/models/{_MODEL}:predict", "/v1/models/{name}:predict", post, self.v1_predict),
            ("/metrics", "/metrics", get, self.metrics),
        ]
        self._exact = {
            pattern: (route, methods, handler) for pattern, route, methods, handler in routes if "(" not in pattern
        }
        self._patterns = [
            (re.compile(pattern + "$"), route, methods, handler)
            for pattern, route, methods, handler in routes
            if "(" in pattern
        ]
        self._children: dict[tuple[str, str, int], Any] = {}
        self._latency: dict[str, Any] = {}

    # --- dispatch ------------------------------------------------------------------------
    def _match(self, method: str, path: str) -> tuple[str, Handler | None, dict[str, str], tuple[str, ...]]:
        found = self._exact.get(path)
        params: dict[str, str] = {}
        if found is None:
            for pattern, route, methods, handler in self._patterns:
                match = pattern.match(path)
                if match:
                    found, params = (route, methods, handler), {k: v for k, v in match.groupdict().items() if v}
                    break
        if found is None:
            return "unmatched", None, params, ()
        route, methods, handler = found
        return route, handler if method in methods else None, params, methods

    async def __call__(
        self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict]], send: Callable[[dict], Awaitable[None]]
    ) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        start = time.perf_counter()
        method, path = scope["method"], scope["path"]
        route, handler, params, methods = self._match(method, path)
        request = Request(self, scope, receive, params)
        try:
            if handler is None:
                if methods:
                    raise MethodNotAllowed(f"{method} is not allowed on {route}; use {', '.join(methods)}", methods)
                raise NotFound(f"no route {loggable(method, 20)} {loggable(path)}")
            response = await handler(request)
        except ClientGone:
            self._count(route, method, 499, start)
            return
        except RequestError as exc:
            response = self._refusal(exc, method, path)
        except Exception:  # a fault of the server, not the request: the traceback is needed
            log.exception("%s %s failed", loggable(method, 20), loggable(path))
            response = json_response({"error": "internal server error (see the server log)"}, 500)
        finally:
            if request.holds_place:
                self.large_bodies.release()
        headers = [
            (b"content-type", response.content_type),
            (b"content-length", str(len(response.body)).encode()),
            *response.headers,
        ]
        if not request.body_read and request.has_body() and (b"connection", b"close") not in headers:
            headers.append((b"connection", b"close"))  # the unread rest of the body must not hold the connection
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})
        self._count(route, method, response.status, start)
        if self.access_log:
            log.info(
                "%s %s %d %.2f ms",
                loggable(method, 20),
                loggable(path),
                response.status,
                (time.perf_counter() - start) * 1000,
            )

    def _refusal(self, exc: RequestError, method: str, path: str) -> Response:
        message = " ".join(str(exc).split())  # one line, whatever the message quoted
        if len(message) > 500:
            message = message[:497] + "..."
        log.info("%s %s -> %d %s", loggable(method, 20), loggable(path), exc.status, loggable(message))
        REJECTED.labels(type(exc).__name__).inc()
        headers: tuple[tuple[bytes, bytes], ...] = ()
        if isinstance(exc, MethodNotAllowed):
            headers = ((b"allow", ", ".join(exc.allow).encode()),)
        elif isinstance(exc, (BodyTooLarge, BodyTimeout)):
            headers = ((b"connection", b"close"),)  # the rest of the body is not read
        return Response(exc.status, orjson.dumps({"error": message}), JSON, headers)

    def _count(self, route: str, method: str, status: int, start: float) -> None:
        key = (route, method, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = REQUESTS.labels(route, method if route != "unmatched" else "-", str(status))
        child.inc()
        latency = self._latency.get(route)
        if latency is None:
            latency = self._latency[route] = LATENCY.labels(route)
        latency.observe(time.perf_counter() - start)

    async def _lifespan(self, receive: Callable[[], Awaitable[dict]], send: Callable[[dict], Awaitable[None]]) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def close(self) -> None:
        self.model.close()
        self.parser.shutdown(wait=False, cancel_futures=True)

    # --- helpers -------------------------------------------------------------------------
    def _model(self, request: Request) -> FashionMnistModel:
        """The served model if the path names it (and its version, if any), else 404."""
        name, version = request.params.get("name"), request.params.get("version")
        if name != self.model.name:
            raise NotFound(f"model {name!r} is not served here; this server serves {self.model.name!r}")
        if version is not None and version != self.model.version:
            raise NotFound(
                f"version {version!r} of {name!r} is not served here; this server serves version {self.model.version!r}"
            )
        return self.model

    # --- handlers ------------------------------------------------------------------------
    async def live(self, request: Request) -> Response:
        """200 only while the server can serve: a model is loaded and no model call is stuck."""
        if not self.model.live:
            return json_response({"live": False, "reason": "no model loaded"}, 503)
        stalled = self.model.stalled_for()
        if stalled >= self.limits.stall_s:
            reason = f"a model call has been waiting or running for {stalled:.0f} s (limit {self.limits.stall_s:g} s)"
            return json_response({"live": False, "reason": reason}, 503)
        return json_response({"live": True})

    async def ready(self, request: Request) -> Response:
        return json_response({"ready": self.model.ready}, 200 if self.model.ready else 503)

    async def server_metadata(self, request: Request) -> Response:
        from . import __version__

        return json_response({"name": SERVER_NAME, "version": __version__, "extensions": list(v2.EXTENSIONS)})

    async def metrics(self, request: Request) -> Response:
        return Response(200, generate_latest(), CONTENT_TYPE_LATEST.encode())

    async def v2_metadata(self, request: Request) -> Response:
        model = self._model(request)
        return json_response(v2.model_metadata(model.name, model.version, model.platform, len(model.class_names)))

    async def v2_model_ready(self, request: Request) -> Response:
        model = self._model(request)
        return json_response({"name": model.name, "ready": model.ready}, 200 if model.ready else 503)

    async def v2_infer(self, request: Request) -> Response:
        model = self._model(request)
        body = await request.body()
        parsed = await request.decode(body, v2.parse_infer, request.headers.get(v2.HEADER_LENGTH), model.max_batch_size)
        probabilities = await model.predict(parsed.pixels)
        classes, labels = predictions(probabilities, model.class_names)
        payload, header_length = v2.infer_response(parsed, model.name, model.version, classes, labels, probabilities)
        if header_length is None:
            return Response(200, payload)
        return Response(
            200, payload, b"application/octet-stream", ((v2.HEADER_LENGTH.encode(), str(header_length).encode()),)
        )

    async def v1_status(self, request: Request) -> Response:
        model = self._model(request)
        return json_response(v1.status(model.name, model.version, model.ready))

    async def v1_metadata(self, request: Request) -> Response:
        model = self._model(request)
        return json_response(v1.metadata(model.name, model.version, len(model.class_names)))

    async def v1_predict(self, request: Request) -> Response:
        model = self._model(request)
        body = await request.body()
        pixels, columnar = await request.decode(body, _parse_v1, model.max_batch_size)
        probabilities = await model.predict(pixels)
        classes, labels = predictions(probabilities, model.class_names)
        return json_response(v1.predict_response(model.version, classes, labels, probabilities, columnar))


def _parse_v1(body: bytes, max_batch_size: int) -> Any:
    pixels = v1.plain_instances(body, max_batch_size)
    if pixels is not None:
        return pixels, False
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"body is not valid JSON: {exc}") from None
    return v1.parse_predict(payload, max_batch_size)
