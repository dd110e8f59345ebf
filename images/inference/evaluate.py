"""Evaluation step (inference image): score the candidate and the champion on the same test set.

    python evaluate.py --candidate-uri URI --data-uri URI --out-uri URI [--champion-uri URI] [--limit-test N]

Both versions are loaded with the serving backends and predict the same held-out images, so
the numbers describe what would be served. A champion whose own evaluation (as a candidate)
scored exactly these images, by their SHA-256, keeps those scores: a version folder never changes
once registered, so scoring it again would repeat the same numbers. Writes into ``--out-uri``
(the candidate's version folder) ``training_curves.png``, ``confusion_matrix.png``,
``per_class_accuracy.png`` and, last, ``evaluation.json``. Promotion is decided by the
registry from these numbers, not here.
Exit status 2: bad input (data, URIs, a version that cannot be loaded), found before scoring.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trainkit.contract import (
    CONFUSION_MATRIX,
    EVALUATION,
    HISTORY,
    METRICS,
    PER_CLASS_ACCURACY,
    TRAINING_CURVES,
)

BAD_INPUT = 2
RESULT_PREFIX = "EKSML_RESULT "
log = logging.getLogger("evaluate")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Score a candidate model version against the champion.")
    parser.add_argument("--candidate-uri", required=True, help=f"candidate version folder ({METRICS} + export)")
    parser.add_argument("--champion-uri", default=None, help="serving champion's version folder, if any")
    parser.add_argument("--data-uri", required=True, help="folder or s3:// prefix with the four IDX .gz files")
    parser.add_argument("--out-uri", required=True, help=f"where {EVALUATION} and the plots go")
    parser.add_argument("--limit-test", type=_positive_int, default=None, help="use the first N test images")
    return parser.parse_args(argv)


def test_data_digest(images: Any, labels: Any) -> str:
    """SHA-256 of the test images and labels as scored (after ``--limit-test``)."""
    return hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()


def recorded_scores(version_uri: str, digest: str) -> dict[str, Any] | None:
    """The scores a version's own evaluation recorded for it, when they are of the images of ``digest``."""
    from eksml_inference.backends import version_name
    from trainkit import store

    path = store.join(version_uri, EVALUATION)
    if not store.exists(path):
        return None
    recorded = store.read_json(path)
    own = recorded.get("candidate") or {}
    if recorded.get("test_data_sha256") != digest or own.get("version") != version_name(version_uri):
        return None
    return {**own, "uri": version_uri, "scored_at": recorded.get("evaluated_at")}


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    args = parse(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, force=True, format="%(asctime)s %(levelname)s %(message)s"
    )
    from eksml_inference.backends import ModelLoadError, load_backend
    from trainkit import store
    from trainkit.data import DataError, load_fashion_mnist

    try:  # cheap checks first: data and both versions' metrics.json, before any framework loads
        _, _, x_test, y_test = load_fashion_mnist(args.data_uri, limit_train=1, limit_test=args.limit_test)
        for uri in filter(None, (args.candidate_uri, args.champion_uri)):
            if not store.exists(store.join(uri, METRICS)):
                raise ModelLoadError(f"no {METRICS} at {uri}: not a finished model version")
        store.filesystem(args.out_uri)
        digest = test_data_digest(x_test, y_test)
        recorded = recorded_scores(args.champion_uri, digest) if args.champion_uri else None
        candidate = load_backend(args.candidate_uri)
        champion = load_backend(args.champion_uri) if args.champion_uri and recorded is None else None
    except (DataError, ModelLoadError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return BAD_INPUT

    from eksml_inference import plots
    from eksml_inference.evaluation import describe, predict_all, score

    names = list(candidate.info.class_names)
    results = {}
    if recorded is not None:
        results["champion"] = recorded
        log.info(
            "champion %s: test accuracy %.4f, loss %.4f on the same %d images, as its own evaluation of %s scored them",
            args.champion_uri,
            recorded["test_accuracy"],
            recorded["test_loss"],
            len(y_test),
            recorded["scored_at"],
        )
    for role, backend in (("candidate", candidate), ("champion", champion)):
        if backend is None:
            continue
        tic = time.monotonic()
        scores = score(predict_all(backend, x_test), y_test, names)
        results[role] = describe(backend, scores)
        log.info(
            "%s %s: test accuracy %.4f, loss %.4f on %d images (%.1f s)",
            role,
            backend.info.uri,
            scores["test_accuracy"],
            scores["test_loss"],
            len(y_test),
            time.monotonic() - tic,
        )

    history_uri = store.join(args.candidate_uri, HISTORY)
    history = store.read_json(history_uri) if store.exists(history_uri) else []
    with tempfile.TemporaryDirectory(prefix="eksml-eval-") as tmp:
        folder = Path(tmp)
        version = results["candidate"]["version"]
        written = []
        if plots.training_curves(history, folder / TRAINING_CURVES, f"training of {version}"):
            written.append(TRAINING_CURVES)
        plots.confusion_matrix(
            results["candidate"]["confusion_matrix"],
            names,
            folder / CONFUSION_MATRIX,
            f"{version}: accuracy {results['candidate']['test_accuracy']:.4f}",
        )
        champ = results.get("champion")
        plots.per_class(
            results["candidate"]["per_class_accuracy"],
            champ and champ["per_class_accuracy"],
            folder / PER_CLASS_ACCURACY,
            f"per-class accuracy of {version}" + (f" vs champion {champ['version']}" if champ else ""),
        )
        written += [CONFUSION_MATRIX, PER_CLASS_ACCURACY]
        delta = results["candidate"]["test_accuracy"] - champ["test_accuracy"] if champ else None
        evaluation = {
            "candidate": results["candidate"],
            "champion": champ,
            "class_names": names,
            "data_uri": args.data_uri,
            "test_images": int(len(y_test)),
            "test_data_sha256": digest,
            "accuracy_delta": delta,
            "plots": written,
            "history_epochs": len(history),
            "evaluated_at": datetime.now(timezone.utc).isoformat(),
            "wall_time_s": round(time.monotonic() - started, 3),
        }
        (folder / EVALUATION).write_text(json.dumps(evaluation, indent=2, sort_keys=True))
        # evaluation.json goes last: its presence marks a complete evaluation.
        store.upload_dir(folder, args.out_uri, last=(EVALUATION,))
    summary = {
        "candidate_accuracy": results["candidate"]["test_accuracy"],
        "champion_accuracy": champ and champ["test_accuracy"],
        "accuracy_delta": delta,
        "test_images": int(len(y_test)),
        "out_uri": args.out_uri,
    }
    print(RESULT_PREFIX + json.dumps(summary, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    from trainkit.cli import exit_now

    exit_now(main())
