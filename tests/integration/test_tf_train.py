"""The tf-fashion-mnist entrypoint, run as the local profile runs it: a process of the image's
virtualenv on a slice of the real Fashion-MNIST, with file:// and s3:// (moto server) stores.

The training runs are shared by module-scoped fixtures: one fresh run of one epoch, then a retry
of the same task asking for two epochs, which must resume from the first one's checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE_DIR = ROOT / "images" / "tf-fashion-mnist"
PYTHON = ROOT / ".venvs" / "tf-fashion-mnist" / "bin" / "python"
RESULT_PREFIX = "EKSML_RESULT "
SLICE = ["--limit-train", "3000", "--limit-test", "1000"]

pytestmark = pytest.mark.skipif(
    not PYTHON.exists(),
    reason="no tf-fashion-mnist virtualenv; build it with: bash images/build-local-venv.sh tf-fashion-mnist",
)


def run_train(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """train.py with the arguments, environment and working folder the local runner gives it."""
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    base.update(PYTHONPATH=str(ROOT / "images" / "common"), PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [str(PYTHON), str(IMAGE_DIR / "train.py"), *args],
        env={**base, **(env or {})},
        cwd=IMAGE_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def succeeded(proc: subprocess.CompletedProcess) -> dict:
    """The EKSML_RESULT of a run that must have worked (its output is shown when it did not)."""
    assert proc.returncode == 0, f"train.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith(RESULT_PREFIX), last
    return json.loads(last[len(RESULT_PREFIX) :])


def score_exported_model(model_dir: Path, data_dir: Path, limit_test: int) -> dict:
    """Reload the exported SavedModel and model.keras in the image's virtualenv and score them."""
    script = f"""
import json, sys
import numpy as np
sys.path.insert(0, {str(IMAGE_DIR)!r})
from exporting import saved_model_predict
from trainkit.data import load_fashion_mnist
import keras
_, _, x, y = load_fashion_mnist({str(data_dir)!r}, limit_train=1, limit_test={limit_test})
p = saved_model_predict({str(model_dir / "saved_model")!r}, x).argmax(axis=1)
k = keras.models.load_model({str(model_dir / "model.keras")!r}).predict(x.astype("float32"), verbose=0).argmax(axis=1)
confusion = np.zeros((10, 10), dtype=int)
np.add.at(confusion, (y, p), 1)
print(json.dumps({{"n": int(len(y)), "accuracy": float((p == y).mean()),
                   "keras_accuracy": float((k == y).mean()), "confusion": confusion.tolist()}}))
"""
    env = {"PYTHONPATH": str(ROOT / "images" / "common"), "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": os.environ["PATH"]}
    proc = subprocess.run([str(PYTHON), "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A fresh one-epoch run, then a retry asking for two epochs on the same checkpoint URI."""
    tmp = tmp_path_factory.mktemp("tf-train")
    ckpt = f"file://{tmp}/ckpt"
    first = run_train(
        "--data-uri",
        str(dataset_dir),
        "--model-uri",
        str(tmp / "model-1"),
        "--checkpoint-uri",
        ckpt,
        "--epochs",
        "1",
        *SLICE,
    )
    second = run_train(
        "--data-uri",
        str(dataset_dir),
        "--model-uri",
        f"file://{tmp}/model-2",
        "--checkpoint-uri",
        ckpt,
        "--epochs",
        "2",
        *SLICE,
    )
    validated = run_train(
        "--data-uri",
        str(dataset_dir),
        "--model-uri",
        str(tmp / "model-val"),
        "--epochs",
        "1",
        "--validation-images",
        "500",
        *SLICE,
    )
    return {"tmp": tmp, "ckpt": ckpt, "first": first, "second": second, "validated": validated}


def test_fresh_run_exports_every_file_metrics_last(runs: dict) -> None:
    result = succeeded(runs["first"])
    model = runs["tmp"] / "model-1"
    files = {p.relative_to(model).as_posix(): p for p in model.rglob("*") if p.is_file()}
    for name in ("saved_model/saved_model.pb", "model.keras", "history.json", "metrics.json"):
        assert name in files, sorted(files)
    assert max(files.values(), key=lambda p: p.stat().st_mtime_ns).name == "metrics.json"
    metrics = json.loads(files["metrics.json"].read_text())
    assert metrics["framework"] == "tensorflow" and metrics["epochs"] == 1
    assert (metrics["train_images"], metrics["test_images"]) == (3000, 1000)
    assert metrics["images_per_sec"] > 0 and metrics["wall_time_s"] > 0
    assert metrics["model_input"]["shape"] == [None, 28, 28] and metrics["model_input"]["dtype"] == "float32"
    assert metrics["export_max_abs_diff"] < 1e-4  # SavedModel and in-memory Keras model agree
    assert result["test_accuracy"] == metrics["test_accuracy"]
    assert result["images_per_sec"] == metrics["images_per_sec"]
    history = json.loads(files["history.json"].read_text())
    assert [h["epoch"] for h in history] == [1]
    assert {"loss", "accuracy", "images_per_sec", "learning_rate"} <= set(history[0])
    # The test set is scored once, after training (metrics.json), never after each epoch.
    assert not {"val_loss", "val_accuracy"} & set(history[0])
    assert "epoch 1/1 loss=" in runs["first"].stdout and "val_accuracy" not in runs["first"].stdout
    assert metrics["recipe"]["xla"] is False
    # One epoch of 3,000 images: with the batch norms' moving averages (which lag behind the
    # weights of so short a run) the exported model scored 0.18-0.34; recalibrated, about 0.8.
    assert metrics["recipe"]["recalibrate_batch_norm"] is True
    assert metrics["test_accuracy"] > 0.6, metrics["test_accuracy"]


def test_validation_split_is_carved_from_the_training_images(runs: dict) -> None:
    result = succeeded(runs["validated"])
    model = runs["tmp"] / "model-val"
    metrics = json.loads((model / "metrics.json").read_text())
    assert (metrics["train_images"], metrics["validation_images"], metrics["test_images"]) == (2500, 500, 1000)
    history = json.loads((model / "history.json").read_text())
    assert {"val_loss", "val_accuracy"} <= set(history[0])
    assert 0 < history[0]["val_accuracy"] <= 1
    assert "val_accuracy=" in runs["validated"].stdout
    assert result["test_accuracy"] == metrics["test_accuracy"]


def one_cycle_rate(step: int, total_steps: int, base: float, recipe: dict) -> float:
    """The one-cycle rate at ``step`` (Keras' CosineDecay with linear warm-up from a tenth of the peak)."""
    peak = base * recipe["peak_factor"]
    warmup = int(total_steps * recipe["warmup_fraction"])
    if step < warmup:
        return peak / 10 + (peak - peak / 10) * step / warmup
    progress = min(step - warmup, total_steps - warmup) / max(1, total_steps - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def test_retry_resumes_from_the_last_finished_epoch(runs: dict) -> None:
    result = succeeded(runs["second"])
    out = runs["second"].stdout
    assert "resuming from the checkpoint of epoch 1" in out and "training epoch 2 onwards" in out
    assert "epoch 2/2 loss=" in out and "epoch 1/2" not in out  # epoch 1 was not trained again
    model = runs["tmp"] / "model-2"
    history = json.loads((model / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    first_history = json.loads((runs["tmp"] / "model-1" / "history.json").read_text())
    assert history[0] == first_history[0]  # carried over from the first attempt
    metrics = json.loads((model / "metrics.json").read_text())
    # The step count continues where the first attempt stopped, on a schedule stretched to two
    # epochs: epoch 2 ends at the schedule's last step (a restart would end it mid-schedule, near the peak).
    recipe, steps = metrics["recipe"], math.ceil(metrics["train_images"] / metrics["batch_size"])
    assert recipe["schedule"] == "one-cycle"
    expected = [
        one_cycle_rate(steps - 1, steps, metrics["learning_rate"], recipe),
        one_cycle_rate(2 * steps - 1, 2 * steps, metrics["learning_rate"], recipe),
    ]
    assert [h["learning_rate"] for h in history] == pytest.approx(expected, rel=1e-3, abs=1e-8)
    assert one_cycle_rate(steps - 1, 2 * steps, metrics["learning_rate"], recipe) > 100 * expected[1]
    assert (metrics["epochs"], metrics["resumed_from_epoch"], result["epochs"]) == (2, 1, 2)
    assert (runs["tmp"] / "ckpt" / "epoch-0002" / "model.keras").is_file()


def test_exported_model_reproduces_its_recorded_accuracy(runs: dict, dataset_dir: Path) -> None:
    succeeded(runs["second"])
    model = runs["tmp"] / "model-2"
    metrics = json.loads((model / "metrics.json").read_text())
    scored = score_exported_model(model, dataset_dir, limit_test=1000)
    assert scored["n"] == metrics["test_images"] == 1000
    assert scored["accuracy"] == metrics["test_accuracy"]
    assert scored["confusion"] == metrics["confusion_matrix"]
    assert abs(scored["keras_accuracy"] - scored["accuracy"]) <= 0.002  # model.keras: same weights
    assert metrics["test_accuracy"] > 0.6, metrics["test_accuracy"]  # chance is 0.1


def test_a_finished_checkpoint_is_exported_without_training(runs: dict, dataset_dir: Path) -> None:
    succeeded(runs["second"])
    model = runs["tmp"] / "model-3"
    proc = run_train(
        "--data-uri",
        str(dataset_dir),
        "--model-uri",
        str(model),
        "--checkpoint-uri",
        runs["ckpt"],
        "--epochs",
        "2",
        *SLICE,
    )
    result = succeeded(proc)
    assert "already covers --epochs 2" in proc.stdout and "loss=" not in proc.stdout
    reference = json.loads((runs["tmp"] / "model-2" / "metrics.json").read_text())
    assert result["test_accuracy"] == reference["test_accuracy"]


@pytest.fixture
def corrupt_dir(dataset_dir: Path, tmp_path: Path):
    """A data folder of the real files in which one can be replaced."""
    folder = tmp_path / "data"
    folder.mkdir()
    for src in dataset_dir.glob("*-ubyte.gz"):
        (folder / src.name).symlink_to(src)

    def replace(name: str, payload: bytes) -> Path:
        (folder / name).unlink()
        (folder / name).write_bytes(payload)
        return folder

    return replace


def _assert_rejected(proc: subprocess.CompletedProcess, model: Path, message: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert message in proc.stderr, proc.stderr
    assert "TensorFlow" not in proc.stdout  # rejected before TensorFlow was even imported
    assert not (model / "metrics.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
        (["--learning-rate", "-0.01"], "argument --learning-rate: must be a finite number > 0, got -0.01"),
        (["--batch-size", "many"], "argument --batch-size: must be an integer >= 1, got 'many'"),
        (["--validation-images", "-1"], "argument --validation-images: must be >= 0, got -1"),
        (["--validation-images", "60000"], "--validation-images 60000 leaves none of the 60000 training images"),
    ],
)
def test_bad_arguments_fail_before_training(args: list[str], message: str, dataset_dir: Path, tmp_path: Path) -> None:
    proc = run_train("--data-uri", str(dataset_dir), "--model-uri", str(tmp_path / "model"), *args)
    _assert_rejected(proc, tmp_path / "model", message)


def test_missing_data_uri_is_named(tmp_path: Path) -> None:
    proc = run_train("--model-uri", str(tmp_path / "model"))
    _assert_rejected(proc, tmp_path / "model", "missing --data-uri")


def test_data_folder_without_idx_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = run_train("--data-uri", str(tmp_path / "empty"), "--model-uri", str(tmp_path / "model"))
    _assert_rejected(proc, tmp_path / "model", "no Fashion-MNIST data at")
    assert "train-images-idx3-ubyte.gz" in proc.stderr and "t10k-labels-idx1-ubyte.gz" in proc.stderr


@pytest.mark.parametrize("payload", [b"not gzip at all", "truncated"])
def test_corrupt_gz_is_named(corrupt_dir, dataset_dir: Path, tmp_path: Path, payload) -> None:
    if payload == "truncated":
        payload = (dataset_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()[:1000]
    folder = corrupt_dir("t10k-labels-idx1-ubyte.gz", payload)
    proc = run_train("--data-uri", str(folder), "--model-uri", str(tmp_path / "model"))
    _assert_rejected(proc, tmp_path / "model", "t10k-labels-idx1-ubyte.gz: not a valid gzip file")


def test_unknown_uri_scheme(dataset_dir: Path, tmp_path: Path) -> None:
    proc = run_train("--data-uri", str(dataset_dir), "--model-uri", "nosuch://bucket/model")
    _assert_rejected(proc, tmp_path / "model", "--model-uri 'nosuch://bucket/model'")


def test_checkpoint_of_other_settings_is_refused(runs: dict, dataset_dir: Path) -> None:
    succeeded(runs["second"])
    model = runs["tmp"] / "model-other"
    proc = run_train(
        "--data-uri",
        str(dataset_dir),
        "--model-uri",
        str(model),
        "--checkpoint-uri",
        runs["ckpt"],
        "--epochs",
        "3",
        "--batch-size",
        "64",
        *SLICE,
    )
    _assert_rejected(proc, model, "batch_size: checkpoint 128, now 64")


def test_s3_data_model_and_checkpoints(moto_env: dict, moto_client, moto_bucket, dataset_dir: Path) -> None:
    """The aws profile's path: data, checkpoints and model all on S3 (a moto server on loopback)."""
    s3 = moto_client("s3")
    moto_bucket("tf-train")
    for src in sorted(dataset_dir.glob("*-ubyte.gz")):
        s3.upload_file(str(src), "tf-train", f"data/{src.name}")
    proc = run_train(
        "--data-uri",
        "s3://tf-train/data",
        "--model-uri",
        "s3://tf-train/models/v1",
        "--checkpoint-uri",
        "s3://tf-train/ckpt",
        "--epochs",
        "1",
        "--limit-train",
        "1000",
        "--limit-test",
        "500",
        env=moto_env,
    )
    result = succeeded(proc)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="tf-train")["Contents"]}
    for key in (
        "models/v1/metrics.json",
        "models/v1/saved_model/saved_model.pb",
        "models/v1/model.keras",
        "models/v1/history.json",
        "ckpt/latest.json",
        "ckpt/epoch-0001/model.keras",
    ):
        assert key in keys, sorted(keys)
    metrics = json.loads(s3.get_object(Bucket="tf-train", Key="models/v1/metrics.json")["Body"].read())
    assert metrics["test_accuracy"] == result["test_accuracy"] and metrics["test_images"] == 500


def test_sagemaker_train_command_passes_arguments(tmp_path: Path) -> None:
    """bin/train (SageMaker's `docker run <image> train`) hands its arguments to train.py."""
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "python").symlink_to(PYTHON)
    text = (IMAGE_DIR / "bin" / "train").read_text()
    assert os.access(IMAGE_DIR / "bin" / "train", os.X_OK)
    local = tmp_path / "train"
    local.write_text(text.replace("/opt/eksml/train.py", str(IMAGE_DIR / "train.py")))
    local.chmod(0o755)
    env = {"PATH": f"{shim}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT / "images" / "common")}
    proc = subprocess.run([str(local), "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Train a Keras CNN on Fashion-MNIST" in proc.stdout and "--checkpoint-uri" in proc.stdout


def test_allocated_gpu_that_tensorflow_cannot_see_fails(dataset_dir: Path, tmp_path: Path) -> None:
    """On a GPU node whose CUDA libraries do not load, the run stops instead of training on CPU."""
    proc = run_train(
        "--data-uri",
        str(dataset_dir),
        "--model-uri",
        str(tmp_path / "model"),
        "--limit-train",
        "200",
        "--limit-test",
        "100",
        env={"NVIDIA_VISIBLE_DEVICES": "GPU-00000000-0000-0000-0000-000000000000", "CUDA_VISIBLE_DEVICES": "-1"},
    )
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "1 GPU(s) allocated (NVIDIA_VISIBLE_DEVICES) but TensorFlow" in proc.stderr
    assert "loss=" not in proc.stdout and not (tmp_path / "model" / "metrics.json").exists()
