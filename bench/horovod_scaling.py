"""Horovod scaling of the mxnet-horovod entrypoint on this machine: 1 process vs 2 processes.

Both runs train on the same images (``--limit-train``) for the same epochs, each through
``horovodrun --gloo`` in the image's virtualenv exactly as the local profile runs it. Throughput
is the last epoch's total images/s from history.json (the first epoch also pays for graph
building), and scaling efficiency = 2-process throughput / (2 x 1-process throughput).
One process gets every core as OpenMP threads; two processes get half each.

    python bench/horovod_scaling.py [--limit-train 12000] [--epochs 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = "/usr/share/datasets/fashion-mnist"


def run_training(processes: int, args: argparse.Namespace, workdir: Path) -> dict:
    """Train with ``processes`` Horovod processes; the last epoch's figures and the wall time."""
    venv = Path(args.venv)
    model = workdir / f"model-np{processes}"
    argv = [str(venv / "bin" / "horovodrun"), "-np", str(processes), "-H", f"localhost:{processes}",
            "--gloo", str(venv / "bin" / "python"), str(ROOT / "images" / "mxnet-horovod" / "train.py"),
            "--data-uri", args.data_uri, "--model-uri", str(model), "--no-onnx",
            "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
            "--limit-train", str(args.limit_train), "--limit-test", "1000", "--seed", "42"]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "images" / "common"))
    env.pop("OMP_NUM_THREADS", None)  # let the entrypoint share the cores among its processes
    started = time.perf_counter()
    proc = subprocess.run(argv, check=False, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{processes}-process run failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    last = json.loads((model / "history.json").read_text())[-1]
    return {"processes": processes, "images_per_sec": last["images_per_sec"],
            "epoch_time_s": last["epoch_time_s"], "test_accuracy": last["test_accuracy"],
            "wall_time_s": wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-uri", default=DATA)
    parser.add_argument("--venv", default=str(ROOT / ".venvs" / "mxnet-horovod"))
    parser.add_argument("--limit-train", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128, help="per process")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run each configuration this many times, alternating, and keep the fastest "
                             "(damps the effect of other work on a shared machine)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not (Path(args.venv) / "bin" / "horovodrun").exists():
        sys.exit(f"no horovodrun in {args.venv}: bash images/build-local-venv.sh mxnet-horovod")
    if args.epochs < 2:
        sys.exit("--epochs must be >= 2: the first epoch includes graph building")
    load_before = os.getloadavg()[0]
    runs: dict[int, list[dict]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="hvd-bench-") as tmp:
        for _ in range(max(1, args.repeats)):
            for processes in (1, 2):
                runs[processes].append(run_training(processes, args, Path(tmp)))
    one, two = (max(runs[n], key=lambda r: r["images_per_sec"]) for n in (1, 2))
    result = {
        "cores": len(os.sched_getaffinity(0)),
        # Other work on the machine skews both runs; the 1-minute load average says how much.
        "load_average_before_after": [load_before, os.getloadavg()[0]],
        "train_images": args.limit_train, "epochs": args.epochs, "batch_size_per_process": args.batch_size,
        "repeats": max(1, args.repeats),
        "one_process": one, "two_processes": two, "all_runs": runs[1] + runs[2],
        "scaling_efficiency": two["images_per_sec"] / (2 * one["images_per_sec"]),
    }
    print(f"cores: {result['cores']}   train images: {args.limit_train}   epochs: {args.epochs}   "
          f"batch per process: {args.batch_size}   load average before/after: "
          f"{load_before:.2f}/{result['load_average_before_after'][1]:.2f}")
    if args.repeats > 1:
        for run in runs[1] + runs[2]:
            print(f"  run: {run['processes']} process(es) {run['images_per_sec']:8.1f} images/s")
    for run in (one, two):
        print(f"{run['processes']} process(es): {run['images_per_sec']:8.1f} images/s "
              f"(last epoch {run['epoch_time_s']:.1f} s, run {run['wall_time_s']:.1f} s, "
              f"test accuracy {run['test_accuracy']:.3f})")
    print(f"scaling efficiency: {result['scaling_efficiency']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
