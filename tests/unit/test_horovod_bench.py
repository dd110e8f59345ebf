"""bench/horovod_scaling.py measures Horovod, not thread contention: one compute thread per process,
N processes on N cores, the same global batch and effective learning rate; and its reading of
Horovod's timeline. Also the entrypoint's Horovod settings. (No MXNet or Horovod needed.)"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
from project_files import load_script

ROOT = Path(__file__).resolve().parents[2]


bench = load_script("horovod_scaling_bench", ROOT / "bench" / "horovod_scaling.py")
train = load_script("mxnet_horovod_train_settings", ROOT / "images" / "mxnet-horovod" / "train.py")


def _args(**overrides) -> argparse.Namespace:
    values = {
        "venv": "/v",
        "data_uri": "/data",
        "epochs": 2,
        "global_batch": 128,
        "learning_rate": 1e-3,
        "limit_train": 12000,
        "pin": True,
    }
    return argparse.Namespace(**{**values, **overrides})


@pytest.mark.parametrize("processes", [1, 2])
def test_each_process_gets_one_thread_and_the_runs_share_the_global_batch(processes: int, monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "8")  # an inherited setting must not leak in
    argv, env, cores = bench.command(processes, _args(), Path("/m"), Path("/t.json"), {"HOROVOD_CYCLE_TIME": "2"})
    assert env["OMP_NUM_THREADS"] == "1" and env["MXNET_CPU_WORKER_NTHREADS"] == "1"
    assert env["MXNET_CPU_PRIORITY_NTHREADS"] == "1" and env["HOROVOD_CYCLE_TIME"] == "2"
    assert env["HOROVOD_TIMELINE"] == "/t.json"
    assert argv[argv.index("-np") + 1] == str(processes)
    assert int(argv[argv.index("--batch-size") + 1]) * processes == 128
    # The entrypoint multiplies the rate by the process count: the effective rate stays 1e-3.
    assert float(argv[argv.index("--learning-rate") + 1]) * processes == pytest.approx(1e-3)
    assert cores == sorted(os.sched_getaffinity(0))[:processes]


def test_unpinned_runs_keep_every_core() -> None:
    assert bench.command(1, _args(pin=False), Path("/m"), Path("/t.json"), {})[2] is None


def test_allreduce_time_counts_fused_gradient_spans_once(tmp_path: Path) -> None:
    events = [
        {"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "horovod_allreduce.0"}},
        {"name": "process_name", "ph": "M", "pid": 2, "args": {"name": "horovod_allreduce.1"}},
        {"name": "process_name", "ph": "M", "pid": 3, "args": {"name": "horovod_allreduce.epoch1.train"}},
        # step 1: tensors 0 and 1 fused into one Gloo allreduce of 3 ms
        {"ph": "B", "name": "ALLREDUCE", "ts": 0, "pid": 1},
        {"ph": "B", "name": "ALLREDUCE", "ts": 0, "pid": 2},
        {"ph": "B", "name": "GLOO_ALLREDUCE", "ts": 1000, "pid": 1},
        {"ph": "B", "name": "GLOO_ALLREDUCE", "ts": 1000, "pid": 2},
        {"ph": "E", "ts": 4000, "pid": 1},
        {"ph": "E", "ts": 4000, "pid": 2},
        {"ph": "E", "ts": 4500, "pid": 1},
        {"ph": "E", "ts": 4500, "pid": 2},
        # step 2: tensor 0 alone, 2 ms
        {"ph": "B", "name": "ALLREDUCE", "ts": 10000, "pid": 1},
        {"ph": "B", "name": "GLOO_ALLREDUCE", "ts": 10000, "pid": 1},
        {"ph": "E", "ts": 12000, "pid": 1},
        {"ph": "E", "ts": 12100, "pid": 1},
        # a metrics allreduce, not a gradient: not counted
        {"ph": "B", "name": "GLOO_ALLREDUCE", "ts": 20000, "pid": 3},
        {"ph": "E", "ts": 29000, "pid": 3},
    ]
    timeline = tmp_path / "timeline.json"
    # Horovod leaves the file without its closing bracket while it is still being written.
    timeline.write_text(json.dumps(events)[:-1])
    assert bench.allreduce_spans(timeline) == [(1000, 4000), (10000, 12000)]


def test_entrypoint_sets_fusion_and_cycle_time_unless_given() -> None:
    env: dict[str, str] = {}
    assert (
        train.horovod_settings(env)
        == train.HOROVOD_DEFAULTS
        == {
            "HOROVOD_FUSION_THRESHOLD": env["HOROVOD_FUSION_THRESHOLD"],
            "HOROVOD_CYCLE_TIME": env["HOROVOD_CYCLE_TIME"],
        }
    )
    given = {"HOROVOD_CYCLE_TIME": "5"}
    assert train.horovod_settings(given)["HOROVOD_CYCLE_TIME"] == "5"
