"""Entrypoint of the inference image: serve one model version over HTTP.

    python -m eksml_inference.server --model-uri s3://bucket/models/fashion-mnist/<version> \
        --model-name fashion-mnist --http-port 8080

Endpoints (see app.py): ``POST /v1/models/<name>:predict`` (TF Serving REST, row and columnar),
``GET /v1/models/<name>[/metadata]``; ``POST /v2/models/<name>/infer`` (Open Inference
Protocol, JSON and binary tensor data), ``GET /v2/models/<name>[/ready]``, ``GET /v2``;
``/v2/health/live`` and ``/v2/health/ready``; ``GET /metrics`` (Prometheus). The model is loaded
before the HTTP port opens, so a listening server always has its model ready; a version that
fails to load exits with status 2 and the reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import resource
import signal
import sys
from collections.abc import Sequence

from .limits import Limits

#: Exit status when the model version cannot be loaded (missing, corrupt, unknown format).
LOAD_FAILED = 2


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return value


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve a Fashion-MNIST model version (V1 + V2 REST).")
    parser.add_argument(
        "--model-uri",
        required=True,
        help="model version folder: local path, file:// or s3:// (AWS_ENDPOINT_URL honoured)",
    )
    parser.add_argument("--model-name", default="fashion-mnist", help="name in the endpoint paths")
    parser.add_argument("--model-version", default=None, help="version reported in responses (default: folder name)")
    parser.add_argument("--http-port", type=_port, default=8080)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (the local profile uses 127.0.0.1)")
    parser.add_argument(
        "--max-batch-size",
        type=_positive_int,
        default=64,
        help="most images per model call; larger requests get HTTP 413",
    )
    parser.add_argument(
        "--max-latency-ms",
        type=float,
        default=0.0,
        help="longest a request waits for others to share its model call; at 0, a "
        "batch is what queued while the model was busy (no added latency when idle)",
    )
    for field in dataclasses.fields(Limits):  # each client-held bound (limits.py, docs/operations.md)
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            type=_positive_int if field.type == "int" else float,
            default=field.default,
            help="see limits.py (default %(default)s)",
        )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    if args.max_latency_ms < 0:
        parser.error("--max-latency-ms must be >= 0")
    try:
        args.limits = Limits(**{field.name: getattr(args, field.name) for field in dataclasses.fields(Limits)})
    except ValueError as exc:
        parser.error(str(exc))
    return args


#: File descriptors the process needs beside its connections (model files, log, listening socket).
SPARE_FDS = 64


def _fit_open_files(max_connections: int) -> None:
    """Raise the open-file limit to fit the connection cap; refuse a cap the hard limit cannot fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max_connections + SPARE_FDS
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise SystemExit(f"error: --max-connections {max_connections} needs {need} open files; the limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    import uvicorn

    from .app import InferenceApp
    from .backends import ModelLoadError
    from .predictor import FashionMnistModel, model_summary

    _fit_open_files(args.limits.max_connections)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    model = FashionMnistModel(
        args.model_name,
        args.model_uri,
        args.model_version,
        max_batch_size=args.max_batch_size,
        max_latency_ms=args.max_latency_ms,
    )
    try:
        model.load()
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return LOAD_FAILED
    from .connection import protocol_class

    app = InferenceApp(model, args.limits, access_log=args.access_log)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.http_port,
        loop="uvloop",
        http=protocol_class(args.limits),
        ws="none",
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_keep_alive=65,
        timeout_graceful_shutdown=30,
    )
    print(
        "EKSML_SERVING "
        + json.dumps(
            {
                **model_summary(model),
                "host": args.host,
                "port": args.http_port,
                "limits": dataclasses.asdict(args.limits),
            }
        ),
        flush=True,
    )
    # uvicorn stops accepting on SIGTERM, finishes in-flight requests, then re-raises the signal
    # to the handler that was there before it: this one, so a drained server exits with 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        uvicorn.Server(config).run()
    finally:
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
