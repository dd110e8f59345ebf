"""Command line for the local model server (what ``make run`` ends with).

python -m eksml.serving status            # which version serves, where, restarts by its supervisor
python -m eksml.serving predict [-n 5]    # a few real test images through the served model
python -m eksml.serving deploy URI VERSION
python -m eksml.serving stop
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eksml.serving", description="Local model server control.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="the serving version, port, pids and the supervisor's restarts")
    predict = sub.add_parser("predict", help="classify real test images with the served model")
    predict.add_argument("-n", "--count", type=int, default=5)
    predict.add_argument("--data-uri", default=None, help="IDX files (default: settings.source_data_uri)")
    deploy = sub.add_parser("deploy", help="deploy a model version (smoke-tested) on the stable port")
    deploy.add_argument("model_uri")
    deploy.add_argument("version")
    sub.add_parser("stop", help="stop the local server")
    args = parser.parse_args(argv)

    from eksml.serving.local import LocalServing, deploy_local, stop_local, supervision
    from eksml.settings import load_settings

    settings = load_settings()
    if args.command == "stop":
        print(f"stopped {stop_local(settings)}" if LocalServing(settings).current() else "nothing serves")
        return 0
    if args.command == "deploy":
        result = deploy_local(args.model_uri, args.version, settings=settings)
        print(
            json.dumps(
                {k: v for k, v in result.items() if k != "smoke"} | {"smoke_accuracy": result["smoke"]["accuracy"]},
                indent=2,
            )
        )
        return 0
    server = LocalServing(settings).current()
    if server is None:
        print(
            "no local model server runs; deploy one with: python -m eksml.serving deploy URI VERSION", file=sys.stderr
        )
        return 1
    if args.command == "status":
        supervised = supervision(server)
        exits = supervised.get("exits") or []
        print(
            json.dumps(
                {
                    "version": server.version,
                    "url": server.url,
                    "supervisor_pid": server.pid,
                    "server_pid": supervised.get("server_pid"),
                    "restarts": supervised.get("restarts", 0),
                    "last_restart_at": supervised.get("last_restart_at"),
                    "last_exit": exits[-1] if exits else None,
                    "model_uri": server.model_uri,
                    "log": server.log_path,
                },
                indent=2,
            )
        )
        return 0
    from eksml.serving.smoke import http_transport, load_test_images

    images, labels = load_test_images(args.data_uri or settings.source_data_uri, args.count, settings)
    status, body = http_transport(server.url)("POST", f"/v1/models/{server.model_name}:predict", {"instances": images})
    if status != 200:
        print(f"HTTP {status}: {body}", file=sys.stderr)
        return 1
    print(f"{server.version} at {server.url}:")
    for i, (prediction, label) in enumerate(zip(body["predictions"], labels, strict=True)):
        mark = "ok" if prediction["class"] == label else "WRONG"
        print(
            f"  test image {i}: predicted {prediction['label']:<12} "
            f"({max(prediction['probabilities']):.2f})  true {CLASS_NAMES[label]:<12} {mark}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
