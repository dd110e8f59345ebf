"""What Airflow costs on top of the work: ``make run`` warm against the same work as bare processes.

In one invocation:

1. ``make run`` once, to warm it (the database migrated, the virtualenvs checked) and to learn the
   exact commands its tasks ran: the local runner logs each one ("local run of <task>: <argv>").
2. The bare sequence, no Airflow: the training process and the evaluation process with those very
   argv (their outputs moved to a temporary folder), then the model server of the trained version,
   started with the argv the deployment builds (``eksml.serving.manifests.serving_spec``), timed
   until ``/v2/health/ready`` answers 200, one V1 prediction, stopped.
3. ``make run`` again, warm, timed from outside; 2 and 3 alternate ``--repeats`` times and the
   fastest of each counts (the machine is shared: one pair moved by 20 % between runs).

It prints each part and the ratio warm ``make run`` / bare sequence (goal: at most 1.15), then
``make run``'s own breakdown (``python -m eksml.breakdown``), which names where the rest went.
Both sequences run back to back on the same machine; quote the ratio, not the seconds.

    python bench/orchestration_overhead.py [--conf '{"epochs": 5}'] [--repeats 3] [--skip-warm-up]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
LOG = ROOT / ".local" / "airflow" / "last-training.log"
RUN_LINE = re.compile(r"local run of (?P<task>train-\S+|evaluate-\S+): (?P<argv>.*?) \[airflow\.task")
#: The arguments naming what a run writes; the bare sequence writes them to its own folder instead.
OUTPUTS = ("--model-uri", "--checkpoint-uri", "--candidate-uri", "--out-uri")


def make_run(conf: str) -> float:
    started = time.perf_counter()
    subprocess.run(["make", "-s", "run", f"CONF={conf}"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def logged_commands() -> dict[str, list[str]]:
    """The argv of the training and evaluation processes of the last ``make run``, by kind."""
    found: dict[str, list[str]] = {}
    for match in RUN_LINE.finditer(LOG.read_text(errors="replace")):
        found[match["task"].split("-")[0]] = shlex.split(match["argv"])
    missing = {"train", "evaluate"} - set(found)
    if missing:
        sys.exit(f"no 'local run of' line for {sorted(missing)} in {LOG}: did make run train with one framework?")
    return found


def redirect_outputs(argv: list[str], folder: Path) -> list[str]:
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg in OUTPUTS:
            out[i + 1] = (folder / ("checkpoints" if arg == "--checkpoint-uri" else "model")).as_uri()
    return out


def run_bare(argv: list[str]) -> float:
    image_dir = Path(argv[1]).parent
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    # As the training spec's env and the local runner set them (eksml.specs, eksml.local.runner).
    env.update({"PYTHONPATH": str(ROOT / "images" / "common"), "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=image_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        sys.exit(f"{Path(argv[1]).name} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_bare(model: Path) -> float:
    """Start the server of ``model``, wait for readiness, predict once, stop: seconds to the prediction."""
    from eksml.local import LocalRunner
    from eksml.serving.manifests import serving_spec
    from eksml.settings import resolve_settings

    settings = resolve_settings()
    port = free_port()
    spec = serving_spec(model.as_uri(), "bench", settings.model_name, host="127.0.0.1", port=port)
    runner = LocalRunner(settings)
    env = runner.environment(spec)
    body = json.dumps({"instances": [[[(row * 28 + col) % 256 for col in range(28)] for row in range(28)]]}).encode()
    started = time.perf_counter()
    proc = subprocess.Popen(
        runner.command(spec), cwd=Path(settings.images_dir) / spec.image, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        while True:
            if proc.poll() is not None:
                sys.exit(f"the model server exited with {proc.returncode} before it was ready")
            try:
                with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        request = urllib.request.Request(
            f"{base}/v1/models/{settings.model_name}:predict", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert len(json.load(answer)["predictions"]) == 1
        return time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", default="{}", help="the training conf of both sequences (make run's CONF)")
    parser.add_argument("--skip-warm-up", action="store_true", help="the last make run had this conf and is warm")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of bare sequence + warm make run, alternated")
    args = parser.parse_args(argv)
    if json.loads(args.conf).get("framework", "tensorflow") != "tensorflow":
        sys.exit("one framework (tensorflow): the bare sequence runs one training and one evaluation")
    if not args.skip_warm_up:
        print(f"warm-up make run (conf {args.conf}): {make_run(args.conf):.1f} s", flush=True)
    commands = logged_commands()
    bare_runs: list[tuple[float, float, float]] = []
    warm_runs: list[float] = []
    for _ in range(args.repeats):  # alternated, so that a slow spell of the machine hits both
        folder = Path(tempfile.mkdtemp(prefix="eksml-bare-"))
        try:
            train_s = run_bare(redirect_outputs(commands["train"], folder))
            evaluate_s = run_bare(redirect_outputs(commands["evaluate"], folder))
            serve_s = serve_bare(folder / "model")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        bare_runs.append((train_s, evaluate_s, serve_s))
        warm_runs.append(make_run(args.conf))
    for i, ((train_s, evaluate_s, serve_s), warm_s) in enumerate(zip(bare_runs, warm_runs, strict=True), 1):
        print(
            f"round {i}: bare {train_s + evaluate_s + serve_s:6.1f} s (training process {train_s:.1f} s, "
            f"evaluation {evaluate_s:.1f} s, server to a prediction {serve_s:.1f} s), make run warm {warm_s:6.1f} s"
        )
    bare_s = min(sum(run) for run in bare_runs)
    warm_s = min(warm_runs)
    print(f"bare sequence : {bare_s:6.1f} s (fastest of {args.repeats})")
    print(f"make run warm : {warm_s:6.1f} s (fastest of {args.repeats})")
    print(f"ratio         : {warm_s / bare_s:6.2f}x  (goal <= 1.15x)")
    print("make run's own breakdown:", flush=True)
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "eksml.breakdown", str(ROOT / ".local" / "run-timings")],
        cwd=ROOT, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "plugins"), "AIRFLOW_HOME": str(ROOT / ".local" / "airflow")},
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
