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


def _local_rank_and_size(env: MutableMapping[str, str]) -> tuple[int, int]:
    rank = env.get("HOROVOD_LOCAL_RANK") or env.get("OMPI_COMM_WORLD_LOCAL_RANK") or 0
    size = env.get("HOROVOD_LOCAL_SIZE") or env.get("OMPI_COMM_WORLD_LOCAL_SIZE") or 1
    return int(rank), max(1, int(size))


def core_share(cores: Sequence[int], local_rank: int, local_size: int) -> list[int]:
    """This process's slice of ``cores`` when ``local_size`` processes split them evenly."""
    ordered = sorted(cores)
    if local_size <= 1 or len(ordered) < local_size:  # one process, or already bound by the launcher
        return ordered
    count = len(ordered)
    return ordered[local_rank * count // local_size : (local_rank + 1) * count // local_size]


def share_cpu_cores(environ: MutableMapping[str, str] | None = None) -> tuple[int, list[int]]:
    """Share the CPU cores among the local Horovod processes (call before importing MXNet):
    each process is bound to its own slice of them and runs one OpenMP thread per core of it.

    Each process would otherwise start one OpenMP thread per core, and N processes on one
    machine would fight over the same cores. Binding matters too: unbound, the two one-thread
    processes of a 2-core run (with Horovod's and Gloo's threads beside them) scaled 0.72-0.73
    in bench/horovod_scaling.py; each bound to its own core, 0.90-0.95 (``horovodrun --gloo``
    binds nothing, where ``mpirun`` binds to cores by default for two processes). A process
    whose launcher already bound it (fewer cores than local processes) is left as it is. An
    explicit OMP_NUM_THREADS wins for the thread count. Returns (threads, bound cores).
    """
    env = os.environ if environ is None else environ
    local_rank, local_size = _local_rank_and_size(env)
    available = os.sched_getaffinity(0)
    cores = core_share(available, local_rank, local_size)
    if set(cores) != available:
        os.sched_setaffinity(0, cores)  # threads started from now on (OpenMP, MXNet, Horovod) inherit it
    # Oversubscribed (fewer cores than processes): one thread each.
    threads = len(cores) if len(available) >= local_size else 1
    env.setdefault("OMP_NUM_THREADS", str(threads))
    return int(env["OMP_NUM_THREADS"]), cores


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
    share_cpu_cores()
    horovod_settings()
    import training  # MXNet and Horovod load here, after the cores are shared

    try:
        training.run(args, data, started)
    except training.ShardError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
