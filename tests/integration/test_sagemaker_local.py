"""The SageMaker branch in the local profile trains for real under SageMaker's contract.

A one-task DAG run (``dag.test()``, a real in-process Airflow run) of ``SageMakerTrainOperator``
on a slice of the real Fashion-MNIST in the TF image's virtualenv: the entrypoint gets no
arguments, only the ``/opt/ml`` tree and ``SM_*`` variables, and the resulting model.tar.gz is
unpacked into the staging folder, where the SavedModel must load and predict. A second run of
the same candidate resumes from the first one's checkpoint instead of training again.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from datetime import datetime
from pathlib import Path

import pytest

from eksml.dataprep import prepare_data
from eksml.settings import load_settings
from eksml.specs import training_spec
from eksml.storage import store_path

ROOT = Path(__file__).resolve().parents[2]
TF_PYTHON = ROOT / ".venvs" / "tf-fashion-mnist" / "bin" / "python"
VERSION = "20261129T000000-tensorflow-0c0ffe"

pytestmark = pytest.mark.skipif(not TF_PYTHON.exists(), reason="no tf-fashion-mnist virtualenv; build it with: "
                                "bash images/build-local-venv.sh tf-fashion-mnist")


@pytest.fixture(scope="module")
def local_store(dataset_dir, tmp_path_factory, airflow_db):
    root = tmp_path_factory.mktemp("sm-local") / "store"
    os.environ["EKSML_PROFILE"] = "local"
    os.environ["EKSML_STORE_URI"] = root.as_uri()
    settings = load_settings()
    data_uri = f"{settings.data_root}/20261122T000000-20261129T000000"
    prepare_data(store_path(str(dataset_dir), settings), store_path(data_uri, settings))
    yield root, settings, data_uri
    os.environ.pop("EKSML_PROFILE", None)
    os.environ.pop("EKSML_STORE_URI", None)


def one_task_dag(spec: dict):
    from airflow.sdk import DAG

    from eksml.sagemaker.operators import SageMakerTrainOperator

    with DAG(dag_id="sagemaker_local_branch", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        SageMakerTrainOperator(task_id="train_sagemaker_tensorflow", spec=spec, instance_type="ml.m5.xlarge",
                               retries=0)
    return dag


def predict(saved_model: Path, data_dir: Path, limit: int) -> float:
    """Accuracy of the SavedModel on the first ``limit`` test images, loaded fresh in the TF venv."""
    code = f"""
import json, sys
sys.path.insert(0, {str(ROOT / 'images' / 'common')!r})
import tensorflow as tf
from trainkit.data import load_fashion_mnist
_, _, x, y = load_fashion_mnist({str(data_dir)!r}, limit_train=1, limit_test={limit})
fn = tf.saved_model.load({str(saved_model)!r}).signatures['serving_default']
name = list(fn.structured_input_signature[1])[0]
out = list(fn(**{{name: tf.constant(x.astype('float32'))}}).values())[0].numpy()
print(json.dumps(float((out.argmax(axis=1) == y).mean())))
"""
    env = {"PATH": os.environ["PATH"], "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([str(TF_PYTHON), "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def trained(local_store):
    root, settings, data_uri = local_store
    spec = training_spec(framework="tensorflow", data_uri=data_uri,
                         model_uri=f"{settings.store_uri}/staging/fashion-mnist/{VERSION}",
                         checkpoint_uri=f"{settings.store_uri}/checkpoints/fashion-mnist/{VERSION}",
                         epochs=1, batch_size=128, learning_rate=0.001, gpus=0, limit_train=2000, limit_test=500)
    first = one_task_dag(spec.to_dict()).test()
    return root, spec, first


def test_contract_run_trains_and_stages_a_model_that_predicts(trained, dataset_dir) -> None:
    root, _, run = trained
    assert str(run.state) == "success", {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    staging = root / "staging" / "fashion-mnist" / VERSION
    metrics = json.loads((staging / "metrics.json").read_text())
    assert metrics["train_images"] == 2000 and metrics["test_images"] == 500 and metrics["epochs"] == 1
    assert (staging / "saved_model" / "saved_model.pb").is_file() and (staging / "model.keras").is_file()
    # The archive sits where SageMaker would upload it, and holds exactly what was staged.
    archives = list((root / "sagemaker" / "fashion-mnist" / VERSION).glob("*/output/model.tar.gz"))
    assert len(archives) == 1
    with tarfile.open(archives[0]) as tar:
        archived = sorted(m.name for m in tar.getmembers() if m.isfile())
    assert archived == sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
    accuracy = predict(staging / "saved_model", dataset_dir, 500)
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    assert accuracy > 0.5  # one epoch on 2,000 images: far above the 0.1 of chance


def test_checkpoint_outlives_the_contract_folder_and_a_rerun_resumes(trained) -> None:
    root, spec, _ = trained
    checkpoints = root / "checkpoints" / "fashion-mnist" / VERSION
    assert json.loads((checkpoints / "latest.json").read_text())["epoch"] == 1
    epoch_files = {p: p.stat().st_mtime_ns for p in (checkpoints / "epoch-0001").rglob("*") if p.is_file()}
    assert epoch_files
    again = one_task_dag(spec.to_dict()).test()
    assert str(again.state) == "success"
    archives = list((root / "sagemaker" / "fashion-mnist" / VERSION).glob("*/output/model.tar.gz"))
    assert len(archives) == 2  # one per run (job names differ), both unpacked into the same staging
    # Resumed: epoch 1 was taken from the checkpoint, not trained (and written) again.
    assert {p: p.stat().st_mtime_ns for p in epoch_files} == epoch_files
