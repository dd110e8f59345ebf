"""Horovod scaling of the mxnet-horovod entrypoint: 1 process vs 2 processes, one thread each.

Each process is pinned to one compute thread (``OMP_NUM_THREADS=1``, MXNet's engine worker
and priority threads 1), and an N-process run to N cores (CPU affinity), so 2 processes on 2
cores against 1 process on 1 core measure Horovod, not two multi-threaded processes fighting
over the same cores, nor a single process using the idle second core for its Python and
Horovod threads. Both runs train on the same images for the same epochs
with the same global batch (``--global-batch``: one process takes all of it, two take half
each) and the same effective learning rate, through ``horovodrun --gloo`` in the image's
virtualenv as the local profile runs it. Throughput is the last epoch's images/s from
history.json (the first epoch also pays for graph building); scaling efficiency =
throughput(2) / (2 x throughput(1)). Gloo allreduce time per step comes from Horovod's
timeline (``HOROVOD_TIMELINE``): the ``GLOO_ALLREDUCE`` spans of the gradient tensors, fused
spans counted once, over the training steps of the run. The tensor-fusion threshold and the
cycle time in effect are the entrypoint's defaults unless given here.

    python bench/horovod_scaling.py [--limit-train 12000] [--epochs 2] [--repeats 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = "/usr/share/datasets/fashion-mnist"
sys.path[:0] = [str(ROOT / "images" / "mxnet-horovod"), str(ROOT / "images" / "common")]

from train import HOROVOD_DEFAULTS  # noqa: E402  (the entrypoint's own Horovod settings)

#: One compute thread per process: OpenMP (MXNet's operators, oneDNN) and MXNet's engine.
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MXNET_CPU_WORKER_NTHREADS": "1",
    "MXNET_CPU_PRIORITY_NTHREADS": "1",
    "MXNET_OMP_MAX_THREADS": "1",
}
#: DistributedTrainer names each gradient allreduce after the parameter index ("horovod_allreduce.3").
_GRADIENT = re.compile(r"^horovod_allreduce\.[0-9]+(:[0-9]+)?$")


def allreduce_spans(timeline: Path) -> list[tuple[int, int]]:
    """Merged (start, end) microseconds of the GLOO_ALLREDUCE activities of gradient tensors."""
    text = timeline.read_text().strip()
    events = json.loads(text if text.endswith("]") else text.rstrip(",") + "]")
    names = {
        e["pid"]: e["args"]["name"]
        for e in events
        if e.get("ph") == "M" and e.get("name") == "process_name" and "name" in e.get("args", {})
    }
    stacks: dict[int, list[tuple[str, int]]] = {}
    spans = []
    for e in events:
        if e.get("ph") == "B":
            stacks.setdefault(e["pid"], []).append((e["name"], e["ts"]))
        elif e.get("ph") == "E" and stacks.get(e["pid"]):
            name, start = stacks[e["pid"]].pop()
            if name == "GLOO_ALLREDUCE" and _GRADIENT.match(names.get(e["pid"], "")):
                spans.append((start, e["ts"]))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):  # a fused allreduce writes the same span for each of its tensors
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def command(
    processes: int, args: argparse.Namespace, model: Path, timeline: Path, horovod: dict[str, str]
) -> tuple[list[str], dict[str, str], list[int] | None]:
    """argv, environment and cores (None: unpinned) of one run with ``processes`` processes."""
    venv = Path(args.venv)
    per_process = args.global_batch // processes
    argv = [
        str(venv / "bin" / "horovodrun"),
        "-np",
        str(processes),
        "-H",
        f"localhost:{processes}",
        "--gloo",
        str(venv / "bin" / "python"),
        str(ROOT / "images" / "mxnet-horovod" / "train.py"),
        "--data-uri",
        args.data_uri,
        "--model-uri",
        str(model),
        "--no-onnx",
        "--epochs",
        str(args.epochs),
        "--batch-size",
        str(per_process),
        # The entrypoint scales the rate by the number of processes (for a per-process batch that
        # stays the same); here the global batch stays the same, so the effective rate must too.
        "--learning-rate",
        repr(args.learning_rate / processes),
        "--limit-train",
        str(args.limit_train),
        "--limit-test",
        "1000",
        "--seed",
        "42",
    ]
    env = dict(
        os.environ, PYTHONPATH=str(ROOT / "images" / "common"), HOROVOD_TIMELINE=str(timeline), **ONE_THREAD, **horovod
    )
    cores = sorted(os.sched_getaffinity(0))[:processes] if args.pin else None
    return argv, env, cores


def run_training(processes: int, args: argparse.Namespace, workdir: Path, horovod: dict[str, str]) -> dict:
    """Train with ``processes`` Horovod processes; the last epoch's figures and the allreduce time."""
    model = workdir / f"model-np{processes}-{time.monotonic_ns()}"
    timeline = model.with_suffix(".timeline.json")
    per_process = args.global_batch // processes
    argv, env, cores = command(processes, args, model, timeline, horovod)
    started = time.perf_counter()
    proc = subprocess.run(
        argv,
        check=False,
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{processes}-process run failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    history = json.loads((model / "history.json").read_text())
    last = history[-1]
    steps = args.epochs * math.ceil((args.limit_train // processes) / per_process)
    spans = allreduce_spans(timeline) if timeline.exists() else []
    allreduce_ms = sum(end - start for start, end in spans) / 1000.0
    return {
        "processes": processes,
        "batch_per_process": per_process,
        "images_per_sec": last["images_per_sec"],
        "epoch_time_s": last["epoch_time_s"],
        "test_accuracy": last["test_accuracy"],
        "wall_time_s": wall,
        "steps": steps,
        "allreduces": len(spans),
        "allreduce_ms_per_step": round(allreduce_ms / steps, 3) if spans else None,
        "load_average": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-uri", default=DATA)
    parser.add_argument("--venv", default=str(ROOT / ".venvs" / "mxnet-horovod"))
    parser.add_argument("--limit-train", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--global-batch",
        type=int,
        default=256,
        help="images per step over all processes (default: what the DAG's default run takes with 2 "
        "processes, its batch_size 128 per process)",
    )
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="effective (global) learning rate")
    parser.add_argument(
        "--fusion-threshold-mb",
        type=float,
        default=None,
        help=f"HOROVOD_FUSION_THRESHOLD (default: the entrypoint's, "
        f"{int(HOROVOD_DEFAULTS['HOROVOD_FUSION_THRESHOLD']) / 2**20:g} MiB)",
    )
    parser.add_argument(
        "--cycle-time-ms",
        type=float,
        default=None,
        help=f"HOROVOD_CYCLE_TIME (default: the entrypoint's, {HOROVOD_DEFAULTS['HOROVOD_CYCLE_TIME']} ms)",
    )
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not restrict an N-process run to N cores (by default the 1-process run gets "
        "one core, so it cannot run its Python thread and Horovod's on the second one)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="run each configuration this many times, alternating, and keep the fastest "
        "(damps the effect of other work on a shared machine)",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not (Path(args.venv) / "bin" / "horovodrun").exists():
        sys.exit(f"no horovodrun in {args.venv}: bash images/build-local-venv.sh mxnet-horovod")
    if args.epochs < 2:
        sys.exit("--epochs must be >= 2: the first epoch includes graph building")
    if args.global_batch % 2:
        sys.exit("--global-batch must be even: two processes take half each")
    horovod = dict(HOROVOD_DEFAULTS)
    if args.fusion_threshold_mb is not None:
        horovod["HOROVOD_FUSION_THRESHOLD"] = str(int(args.fusion_threshold_mb * 2**20))
    if args.cycle_time_ms is not None:
        horovod["HOROVOD_CYCLE_TIME"] = f"{args.cycle_time_ms:g}"
    load_before = os.getloadavg()[0]
    runs: dict[int, list[dict]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="hvd-bench-") as tmp:
        for _ in range(max(1, args.repeats)):
            for processes in (1, 2):
                runs[processes].append(run_training(processes, args, Path(tmp), horovod))
    one, two = (max(runs[n], key=lambda r: r["images_per_sec"]) for n in (1, 2))
    result = {
        "cores": len(os.sched_getaffinity(0)),
        "pinned": args.pin,
        "threads_per_process": ONE_THREAD,
        "horovod": horovod,
        # Other work on the machine skews both runs; the 1-minute load average says how much.
        "load_average_before_after": [load_before, os.getloadavg()[0]],
        "train_images": args.limit_train,
        "epochs": args.epochs,
        "global_batch": args.global_batch,
        "repeats": max(1, args.repeats),
        "one_process": one,
        "two_processes": two,
        "all_runs": runs[1] + runs[2],
        "scaling_efficiency": two["images_per_sec"] / (2 * one["images_per_sec"]),
    }
    print(
        f"cores: {result['cores']}   one compute thread per process, "
        f"{'N processes on N cores' if args.pin else 'unpinned'}   train images: {args.limit_train}   "
        f"epochs: {args.epochs}   global batch: {args.global_batch}   load average before/after: "
        f"{load_before:.2f}/{result['load_average_before_after'][1]:.2f}"
    )
    print(
        f"tensor fusion threshold: {int(horovod['HOROVOD_FUSION_THRESHOLD']) / 2**20:g} MiB   "
        f"cycle time: {horovod['HOROVOD_CYCLE_TIME']} ms"
    )
    if args.repeats > 1:
        for run in runs[1] + runs[2]:
            print(
                f"  run: {run['processes']} process(es) {run['images_per_sec']:8.1f} images/s  "
                f"load {run['load_average']}"
            )
    print(
        f"{'processes':>9} {'batch/proc':>10} {'images/s':>9} {'epoch s':>8} {'allreduce ms/step':>18} {'test acc':>9}"
    )
    for run in (one, two):
        allreduce = f"{run['allreduce_ms_per_step']:.2f}" if run["allreduce_ms_per_step"] is not None else "-"
        print(
            f"{run['processes']:>9} {run['batch_per_process']:>10} {run['images_per_sec']:9.1f} "
            f"{run['epoch_time_s']:8.1f} {allreduce:>18} {run['test_accuracy']:9.3f}"
        )
    print(f"scaling efficiency: {result['scaling_efficiency']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
