"""Entrypoint of the mxnet-horovod image: data-parallel Gluon training on Fashion-MNIST.

Run one process per GPU (MPIJob, SageMaker MPI) or per CPU slot (``horovodrun -np N --gloo``
locally); every process runs this same file. Arguments and data are checked before Horovod,
MXNet or any network is set up, so bad input fails in seconds with a clear message.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import MutableMapping, Sequence

from trainkit.cli import check_uris, parse_args

#: Exit status for input that can never train (missing or corrupt data, bad URI).
BAD_INPUT = 2
#: Horovod's tensor fusion and cycle time, measured with bench/horovod_scaling.py. The network's
#: gradients are ~1.7 MB: a 4 MiB buffer fuses all of them into one allreduce per step.
HOROVOD_DEFAULTS = {"HOROVOD_FUSION_THRESHOLD": str(4 * 2**20), "HOROVOD_CYCLE_TIME": "1"}


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-onnx", dest="onnx", action="store_false", help="export the MXNet symbol + params only, without model.onnx"
    )


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The common training arguments (trainkit.cli) plus this image's own."""
    return parse_args(argv, _add_arguments, description="Train a Gluon CNN on Fashion-MNIST with Horovod.")


def limit_cpu_threads(environ: MutableMapping[str, str] | None = None) -> int:
    """Share the CPU cores among the local Horovod processes (call before importing MXNet).

    Each process would otherwise start one OpenMP thread per core, and N processes on one
    machine would fight over the same cores. An explicit OMP_NUM_THREADS wins.
    """
    env = os.environ if environ is None else environ
    if "OMP_NUM_THREADS" in env:
        return int(env["OMP_NUM_THREADS"])
    local_size = int(env.get("HOROVOD_LOCAL_SIZE") or env.get("OMPI_COMM_WORLD_LOCAL_SIZE") or 1)
    threads = max(1, len(os.sched_getaffinity(0)) // max(1, local_size))
    env["OMP_NUM_THREADS"] = str(threads)
    return threads


def horovod_settings(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Tensor fusion and cycle time (call before Horovod starts); explicit variables win."""
    env = os.environ if environ is None else environ
    for key, value in HOROVOD_DEFAULTS.items():
        env.setdefault(key, value)
    return {key: env[key] for key in HOROVOD_DEFAULTS}


def main(argv: Sequence[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(message)s")
    from trainkit.data import DataError, load_fashion_mnist

    try:
        check_uris(args)
        data = load_fashion_mnist(args.data_uri, args.limit_train, args.limit_test)
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return BAD_INPUT
    limit_cpu_threads()
    horovod_settings()
    import training  # MXNet and Horovod load here, after the threads are limited

    try:
        training.run(args, data, started)
    except training.ShardError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
