"""The mxnet-horovod image's entrypoint under `horovodrun -np 2 --gloo`, on real Fashion-MNIST.

Runs in the image's own virtualenv (.venvs/mxnet-horovod), the way the local profile runs it:
two ranks on a 4000/1000-image slice, first 1 epoch, then 2 epochs on the same checkpoint
location (an S3 bucket on a local moto server), which must resume at epoch 2.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venvs" / "mxnet-horovod"
IMAGE = ROOT / "images" / "mxnet-horovod"
TRAIN = IMAGE / "train.py"
EXPECTED_FILES = {"model-symbol.json", "model-0000.params", "model.onnx", "metrics.json", "history.json"}
SLICE = ["--limit-train", "4000", "--limit-test", "1000"]

pytestmark = pytest.mark.skipif(
    not (VENV / "bin" / "horovodrun").exists(),
    reason=f"{VENV} not built: run `bash images/build-local-venv.sh mxnet-horovod` (about 3 min)",
)

# Scores an exported model in the image venv: symbol + params with Gluon, model.onnx with
# onnx.checker and (when installed) onnxruntime. Prints one JSON line.
SCORE = r"""
import json, sys
import mxnet as mx, numpy as np, onnx
from trainkit.data import load_fashion_mnist
sys.path.insert(0, sys.argv[3])
from network import to_input
model, data = sys.argv[1], sys.argv[2]
_, _, x, y = load_fashion_mnist(data, 1, 1000)
x = to_input(x)
net = mx.gluon.SymbolBlock.imports(f"{model}/model-symbol.json", ["data"], f"{model}/model-0000.params")
result = {"mxnet_accuracy": float((net(mx.nd.array(x)).argmax(axis=1).asnumpy() == y).mean())}
onnx.checker.check_model(f"{model}/model.onnx")
result["onnx_checked"] = True
try:
    import onnxruntime
except ImportError:
    result["onnx_accuracy"] = None
else:
    session = onnxruntime.InferenceSession(f"{model}/model.onnx", providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: x})[0]
    result["onnx_accuracy"] = float((logits.argmax(axis=1) == y).mean())
print(json.dumps(result))
"""


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env["PATH"] = f"{VENV / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONPATH"] = str(ROOT / "images" / "common")
    env.update(extra or {})
    return env


def _horovodrun_argv(args: list[str]) -> list[str]:
    """The entrypoint under ``horovodrun --gloo`` with 2 processes on localhost."""
    return [
        str(VENV / "bin" / "horovodrun"),
        "-np",
        "2",
        "-H",
        "localhost:2",
        "--gloo",
        str(VENV / "bin" / "python"),
        str(TRAIN),
        *args,
    ]


def _horovodrun(args: list[str], env: dict[str, str]) -> str:
    argv = _horovodrun_argv(args)
    proc = subprocess.run(argv, check=False, env=env, cwd=IMAGE, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"horovodrun failed ({proc.returncode}):\n{output[-4000:]}"
    return output


@pytest.fixture(scope="module")
def runs(tmp_path_factory, dataset_dir, moto_env, moto_bucket):
    """Run 1 (1 epoch) then run 2 (2 epochs, same checkpoint URI): their outputs and model folders."""
    bucket = moto_bucket("hvd-checkpoints")
    root = tmp_path_factory.mktemp("horovod")
    common = ["--data-uri", str(dataset_dir), "--checkpoint-uri", f"s3://{bucket}/run/ckpt", *SLICE]
    env = _env(moto_env)
    first = _horovodrun([*common, "--model-uri", f"file://{root}/model-1", "--epochs", "1"], env)
    second = _horovodrun([*common, "--model-uri", str(root / "model-2"), "--epochs", "2"], env)
    return {"first": first, "second": second, "model_1": root / "model-1", "model_2": root / "model-2"}


def test_both_ranks_train_their_own_shard(runs):
    for rank in (0, 1):
        assert f"rank {rank}/2: shard of 2000 images" in runs["first"]
    metrics = json.loads((runs["model_1"] / "metrics.json").read_text())
    assert metrics["workers"] == 2
    assert metrics["train_images"] == 4000
    assert metrics["test_images"] == 1000
    assert metrics["images_per_sec"] > 0
    assert metrics["images_per_sec_per_worker"] == pytest.approx(metrics["images_per_sec"] / 2)
    assert metrics["horovod"] == {"version": "0.28.1", "controller": "gloo"}


def test_only_rank_0_writes_the_model(runs):
    for key in ("model_1", "model_2"):
        assert {p.name for p in runs[key].iterdir()} == EXPECTED_FILES
        assert json.loads((runs[key] / "metrics.json").read_text())["written_by_rank"] == 0
    for out in (runs["first"], runs["second"]):
        assert "rank 1/2: done; rank 0 exports the model" in out
        assert "rank 0/2: test accuracy" in out and "rank 1/2: test accuracy" not in out


def test_second_run_resumes_from_the_checkpoint(runs):
    assert "resuming" not in runs["first"]
    for rank in (0, 1):
        assert f"rank {rank}/2: resuming at epoch 2 from checkpoint epoch 1" in runs["second"]
    assert "epoch 1/2" not in runs["second"]
    metrics = json.loads((runs["model_2"] / "metrics.json").read_text())
    assert (metrics["resumed_from_epoch"], metrics["epochs_run"], metrics["epochs"]) == (1, 1, 2)
    history = json.loads((runs["model_2"] / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    first = json.loads((runs["model_1"] / "history.json").read_text())
    assert history[0] == first[0]  # epoch 1 comes from the checkpoint, not from a retrain


def test_exported_model_loads_and_beats_chance(runs, dataset_dir):
    model = runs["model_2"]
    proc = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", SCORE, str(model), str(dataset_dir), str(IMAGE)],
        check=False,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores = json.loads(proc.stdout.strip().splitlines()[-1])
    metrics = json.loads((model / "metrics.json").read_text())
    assert scores["mxnet_accuracy"] > 0.5  # chance is 0.1
    assert scores["mxnet_accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    assert scores["onnx_checked"]
    if scores["onnx_accuracy"] is not None:
        assert scores["onnx_accuracy"] == pytest.approx(scores["mxnet_accuracy"], abs=2e-3)
        assert metrics["onnx_max_abs_diff"] < 1e-4


def test_missing_data_fails_fast_with_a_clear_message(tmp_path):
    """Fast means before the expensive imports: Python's import-time report (``-X importtime``,
    through its environment variable) names every module the entrypoint loaded before it stopped."""
    proc = subprocess.run(
        [
            str(VENV / "bin" / "python"),
            str(TRAIN),
            "--data-uri",
            str(tmp_path / "nowhere"),
            "--model-uri",
            str(tmp_path / "model"),
        ],
        check=False,
        env=_env({"PYTHONPROFILEIMPORTTIME": "1"}),
        cwd=IMAGE,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "numpy" in imported  # the report works: the data check's own import is in it
    assert not imported & {"mxnet", "horovod", "horovod.mxnet"}, "MXNet or Horovod loaded before the data check"
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and "Fashion-MNIST" in error
    assert str(tmp_path / "nowhere") in error and "train-images-idx3-ubyte.gz" in error
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "model").exists()


def test_too_few_images_for_the_workers_fails_with_a_clear_message(tmp_path, dataset_dir):
    argv = _horovodrun_argv(
        [
            "--data-uri",
            str(dataset_dir),
            "--model-uri",
            str(tmp_path / "model"),
            "--limit-train",
            "1",
            "--limit-test",
            "10",
        ]
    )
    proc = subprocess.run(argv, check=False, env=_env(), cwd=IMAGE, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "error: 1 training images cannot be shared by 2 workers" in proc.stdout + proc.stderr
    assert not (tmp_path / "model").exists()
