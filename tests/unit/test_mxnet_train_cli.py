"""Arguments and CPU-thread sharing of the mxnet-horovod entrypoint (no MXNet needed)."""

from __future__ import annotations

import os
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


def test_local_horovod_processes_share_the_cores():
    cores = len(os.sched_getaffinity(0))
    env = {"HOROVOD_LOCAL_SIZE": "2"}
    assert train.limit_cpu_threads(env) == max(1, cores // 2)
    assert env["OMP_NUM_THREADS"] == str(max(1, cores // 2))


def test_explicit_thread_count_wins_and_one_process_gets_every_core():
    assert train.limit_cpu_threads({"OMP_NUM_THREADS": "3", "HOROVOD_LOCAL_SIZE": "2"}) == 3
    assert train.limit_cpu_threads({}) == len(os.sched_getaffinity(0))
