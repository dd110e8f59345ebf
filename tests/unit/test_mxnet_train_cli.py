"""Arguments and CPU-core sharing of the mxnet-horovod entrypoint (no MXNet needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from project_files import load_script

_PATH = Path(__file__).resolve().parents[2] / "images" / "mxnet-horovod" / "train.py"
train = load_script("mxnet_horovod_train", _PATH)

BASE = ["--data-uri", "s3://bucket/data", "--model-uri", "file:///tmp/model"]


def test_common_arguments_and_onnx_export_by_default(monkeypatch):
    monkeypatch.delenv("SM_MODEL_DIR", raising=False)
    args = train.parse([*BASE, "--epochs", "3", "--batch-size", "64", "--checkpoint-uri", "s3://b/ckpt"])
    assert (args.epochs, args.batch_size, args.checkpoint_uri) == (3, 64, "s3://b/ckpt")
    assert args.onnx is True
    assert train.parse([*BASE, "--no-onnx"]).onnx is False


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--model-uri", "/tmp/m"], "--data-uri"),
        ([*BASE, "--epochs", "0"], "--epochs"),
        ([*BASE, "--batch-size", "many"], "--batch-size"),
    ],
)
def test_bad_arguments_exit_with_usage_error(monkeypatch, capsys, argv, message):
    monkeypatch.delenv("SM_MODEL_DIR", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        train.parse(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.fixture
def affinity(monkeypatch):
    """A machine of 8 cores whose affinity calls are recorded, not made."""
    state = {"cores": set(range(8)), "set": []}
    monkeypatch.setattr(train.os, "sched_getaffinity", lambda pid: set(state["cores"]))

    def set_affinity(pid, cores):
        state["cores"] = set(cores)
        state["set"].append(sorted(cores))

    monkeypatch.setattr(train.os, "sched_setaffinity", set_affinity)
    return state


def test_local_horovod_processes_each_get_their_own_cores(affinity):
    """Unbound, the ranks of a local run float over each other's cores (0.72 scaling on 2 cores, 0.90+ bound)."""
    env = {"HOROVOD_LOCAL_SIZE": "2", "HOROVOD_LOCAL_RANK": "1"}
    assert train.share_cpu_cores(env) == (4, [4, 5, 6, 7])
    assert affinity["set"] == [[4, 5, 6, 7]] and env["OMP_NUM_THREADS"] == "4"
    assert [train.core_share(range(8), rank, 3) for rank in range(3)] == [[0, 1], [2, 3, 4], [5, 6, 7]]
    # Open MPI's variables name the same thing under mpirun (the MPIJob); 2 cores, 2 processes.
    affinity["cores"] = {0, 1}
    assert train.share_cpu_cores({"OMPI_COMM_WORLD_LOCAL_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_RANK": "1"}) == (1, [1])


def test_one_process_keeps_every_core_and_a_bound_process_is_left_alone(affinity):
    assert train.share_cpu_cores({}) == (8, list(range(8)))
    affinity["cores"] = {3}  # bound by its launcher (mpirun --bind-to core)
    env = {"HOROVOD_LOCAL_SIZE": "2", "HOROVOD_LOCAL_RANK": "1"}
    assert train.share_cpu_cores(env) == (1, [3])
    assert affinity["set"] == []


def test_explicit_thread_count_wins(affinity):
    env = {"OMP_NUM_THREADS": "3", "HOROVOD_LOCAL_SIZE": "2", "HOROVOD_LOCAL_RANK": "0"}
    assert train.share_cpu_cores(env) == (3, [0, 1, 2, 3])
