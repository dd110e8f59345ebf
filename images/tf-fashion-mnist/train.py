"""Entrypoint of the tf-fashion-mnist image: train a Keras CNN on Fashion-MNIST and export it.

Same program in a pod (``python /opt/eksml/train.py ARGS``), on SageMaker (``train``, arguments
from its training contract) and in the local profile (the image's virtualenv). Arguments, data
and checkpoint settings are checked before TensorFlow is even imported, so bad input fails in
seconds with a clear message and exit status 2. On success the last line of output is
``EKSML_RESULT {json}`` for the orchestrator's logs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence

from trainkit.cli import check_uris, exit_now, parse_args

#: Exit status for input that can never train (missing or corrupt data, bad URI, foreign checkpoint).
BAD_INPUT = 2
RESULT_PREFIX = "EKSML_RESULT "


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from network import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS

    parser.set_defaults(epochs=DEFAULT_EPOCHS, batch_size=DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--validation-images",
        type=_non_negative_int,
        default=0,
        help="hold out this many training images (seeded) and report accuracy on them after "
        "every epoch; 0: train on all of them (the test set is scored once, at the end)",
    )


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The common training arguments (trainkit.cli) plus this image's own."""
    return parse_args(argv, _add_arguments, description="Train a Keras CNN on Fashion-MNIST and export a SavedModel.")


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    args = parse(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, force=True, format="%(asctime)s %(levelname)s %(message)s"
    )
    from checkpointing import fingerprint, resume_point

    from trainkit.checkpoints import CheckpointStore
    from trainkit.data import DataError, load_fashion_mnist

    try:
        check_uris(args)
        data = load_fashion_mnist(args.data_uri, args.limit_train, args.limit_test)
        ckpt = CheckpointStore(args.checkpoint_uri)
        config = fingerprint(args, train_images=len(data[0]), test_images=len(data[2]))
        resume_epoch = resume_point(ckpt, config)
        if args.validation_images >= len(data[0]):
            raise ValueError(
                f"--validation-images {args.validation_images} leaves none of the "
                f"{len(data[0])} training images to train on"
            )
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return BAD_INPUT
    logging.getLogger("train").info(
        "data %s: %d training images (%d held out for validation) and %d test images; epochs %d, batch %d, "
        "peak learning rate %g",
        args.data_uri,
        len(data[0]),
        args.validation_images,
        len(data[2]),
        args.epochs,
        args.batch_size,
        args.learning_rate,
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import training  # TensorFlow loads here

    try:
        metrics = training.run(args, data, ckpt, resume_epoch, config, started)
    except training.DeviceError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    result = {
        k: metrics[k]
        for k in (
            "test_accuracy",
            "test_loss",
            "images_per_sec",
            "wall_time_s",
            "epochs",
            "train_images",
            "test_images",
        )
    }
    print(RESULT_PREFIX + json.dumps({**result, "model_uri": args.model_uri}, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    exit_now(main())
