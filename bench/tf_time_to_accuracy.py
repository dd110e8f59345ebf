"""Time to accuracy of the default TensorFlow run: test accuracy, training seconds, images/s.

Runs the tf-fashion-mnist entrypoint exactly as the local profile runs it (its virtualenv,
the DAG's default epochs, batch size and learning rate, all 60,000 training images), ``--runs``
times, and prints each run and the medians. The test set is scored once per run, after
training, by the exported model. Training seconds exclude start-up, data loading and export
(metrics.json's ``train_time_s``). The load average before and after each run says how much
other work shared the cores.

    python bench/tf_time_to_accuracy.py [--runs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = "/usr/share/datasets/fashion-mnist"
#: The training DAG's defaults (plugins/eksml/params.py): what `make run` trains.
DEFAULTS = {"epochs": 5, "batch_size": 128, "learning_rate": 0.001}
#: What the default run must reach: test accuracy, training seconds on 2 cores (median of the runs).
TARGET_ACCURACY = 0.935
TARGET_TRAIN_S = 150.0


def one_run(args: argparse.Namespace, workdir: Path, index: int) -> dict:
    model = workdir / f"model-{index}"
    argv = [
        str(Path(args.venv) / "bin" / "python"),
        str(ROOT / "images" / "tf-fashion-mnist" / "train.py"),
        "--data-uri",
        args.data_uri,
        "--model-uri",
        str(model),
        "--seed",
        str(42 + index),
        "--epochs",
        str(DEFAULTS["epochs"]),
        "--batch-size",
        str(DEFAULTS["batch_size"]),
        "--learning-rate",
        str(DEFAULTS["learning_rate"]),
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "images" / "common"), TF_CPP_MIN_LOG_LEVEL="2")
    load_before = os.getloadavg()[0]
    tic = time.perf_counter()
    proc = subprocess.run(
        argv, env=env, cwd=ROOT / "images" / "tf-fashion-mnist", capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - tic
    if proc.returncode != 0:
        sys.exit(f"run {index} failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    metrics = json.loads((model / "metrics.json").read_text())
    history = json.loads((model / "history.json").read_text())
    return {
        "run": index,
        "seed": 42 + index,
        "test_accuracy": metrics["test_accuracy"],
        "train_time_s": metrics["train_time_s"],
        "images_per_sec": round(metrics["images_per_sec"], 1),
        "epoch_images_per_sec": [h["images_per_sec"] for h in history],
        "process_wall_s": round(wall, 1),
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data-uri", default=DATA)
    parser.add_argument("--venv", default=str(ROOT / ".venvs" / "tf-fashion-mnist"))
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not (Path(args.venv) / "bin" / "python").exists():
        sys.exit(f"no virtualenv at {args.venv}: bash images/build-local-venv.sh tf-fashion-mnist")
    print(
        f"cores: {len(os.sched_getaffinity(0))}  nice: {os.nice(0)}  defaults: {DEFAULTS}  "
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}",
        flush=True,
    )
    runs = []
    with tempfile.TemporaryDirectory(prefix="tf-tta-") as tmp:
        for index in range(args.runs):
            run = one_run(args, Path(tmp), index)
            runs.append(run)
            print(
                f"run {index}: test accuracy {run['test_accuracy']:.4f}  training {run['train_time_s']:6.1f} s  "
                f"{run['images_per_sec']:6.0f} images/s  (process {run['process_wall_s']:.0f} s, load average "
                f"{run['load_average_before_after'][0]:.2f} -> {run['load_average_before_after'][1]:.2f})",
                flush=True,
            )
    median = {k: statistics.median(r[k] for r in runs) for k in ("test_accuracy", "train_time_s", "images_per_sec")}
    met = median["test_accuracy"] >= TARGET_ACCURACY and median["train_time_s"] <= TARGET_TRAIN_S
    print(
        f"median of {len(runs)}: test accuracy {median['test_accuracy']:.4f}  training {median['train_time_s']:.1f} s  "
        f"{median['images_per_sec']:.0f} images/s  -> target (>= {TARGET_ACCURACY}, <= {TARGET_TRAIN_S:.0f} s) "
        f"{'met' if met else 'NOT met'}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"defaults": DEFAULTS, "runs": runs, "median": median, "target_met": met}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
