"""The SageMaker branch in the local profile trains for real under SageMaker's contract.

The training DAG runs (``dag.test()``, a real in-process Airflow run) with ``trainer=sagemaker``
on a slice of the real Fashion-MNIST: ``SageMakerTrainOperator`` runs the TF entrypoint in its
virtualenv with no arguments at all, only the ``/opt/ml`` tree and ``SM_*`` variables; the
model.tar.gz it yields is unpacked into the staging folder, evaluated and registered, and the
registered SavedModel must load and predict. A retried try then resumes from the run's
checkpoint instead of training again.
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path
from types import SimpleNamespace

import inference_models as im
import pytest
from project_files import load_dag

ROOT = Path(__file__).resolve().parents[2]
TF_PYTHON = ROOT / ".venvs" / "tf-fashion-mnist" / "bin" / "python"
INFERENCE_PYTHON = ROOT / ".venvs" / "inference" / "bin" / "python"
CONF = {
    "trainer": "sagemaker",
    "framework": "tensorflow",
    "epochs": 1,
    "limit_train": 2000,
    "limit_test": 500,
    "gpus": 0,
    "sagemaker_instance_type": "ml.m5.xlarge",
}

pytestmark = pytest.mark.skipif(
    not (TF_PYTHON.exists() and INFERENCE_PYTHON.exists()),
    reason="tf-fashion-mnist or inference virtualenv missing: bash images/build-local-venv.sh <image>",
)


@pytest.fixture(scope="module")
def dag_run(dataset_dir, tmp_path_factory, airflow_db):
    store = tmp_path_factory.mktemp("sm-local") / "store"
    saved = {k: os.environ.get(k) for k in ("EKSML_PROFILE", "EKSML_STORE_URI")}
    os.environ.update(EKSML_PROFILE="local", EKSML_STORE_URI=store.as_uri())
    try:
        dag = load_dag("fashion_mnist_training")
        run = dag.test(run_conf=CONF)
        yield SimpleNamespace(store=store, dag=dag, run=run)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_sagemaker_branch_registers_a_version_that_predicts(dag_run, dataset_dir) -> None:
    states = {ti.task_id: str(ti.state) for ti in dag_run.run.get_task_instances()}
    assert str(dag_run.run.state) == "success", states
    assert states["train_sagemaker_tensorflow"] == "success"
    assert states["train_tensorflow"] == "skipped"
    models = dag_run.store / "models" / "fashion-mnist"
    versions = [p for p in models.iterdir() if (p / "metadata.json").exists()]
    assert len(versions) == 1
    meta = json.loads((versions[0] / "metadata.json").read_text())
    assert meta["trainer"] == "sagemaker" and meta["run_id"] == dag_run.run.run_id
    metrics = meta["metrics"]
    assert (metrics["train_images"], metrics["test_images"], metrics["epochs"]) == (2000, 500, 1)
    accuracy = im.saved_model_accuracy(versions[0] / "saved_model", dataset_dir, 500)
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    assert accuracy > 0.25  # 16 steps of one epoch on 2,000 images, yet well above the 0.1 of chance
    # SageMaker's artifact sits where SageMaker would upload it and holds what was staged.
    archives = list((dag_run.store / "sagemaker" / "fashion-mnist" / versions[0].name).glob("*/output/model.tar.gz"))
    assert len(archives) == 1
    with tarfile.open(archives[0]) as tar:
        archived = {m.name for m in tar.getmembers() if m.isfile()}
    assert {"metrics.json", "model.keras", "saved_model/saved_model.pb"} <= archived
    assert archived <= {p.relative_to(versions[0]).as_posix() for p in versions[0].rglob("*") if p.is_file()}


def xcom(run_id: str, task_id: str):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.execute(
                XComModel.get_many(
                    run_id=run_id, key="return_value", task_ids=task_id, dag_ids="fashion_mnist_training"
                )
            )
            .scalars()
            .first()
        )
        return XComModel.deserialize_value(row)


def test_a_successful_run_prints_no_error_line(dag_run) -> None:
    """When a task ends, the task runner looks up every extra link of its operator
    (``task_runner.finalize``), and a missing XCom is logged as "ERROR XCom not found"
    (``airflow.sdk.api.client.XComOperations.get``): the SageMaker links of a local job were
    missing, two ERROR lines in a run that succeeded. Their keys must be there."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from eksml.sagemaker.operators import SageMakerTrainingJobLink, SageMakerTrainingLogsLink

    assert str(dag_run.run.state) == "success"
    with create_session() as session:
        keys = set(
            session.scalars(
                select(XComModel.key).where(
                    XComModel.dag_id == dag_run.run.dag_id,
                    XComModel.run_id == dag_run.run.run_id,
                    XComModel.task_id == "train_sagemaker_tensorflow",
                )
            )
        )
    assert {SageMakerTrainingJobLink.key, SageMakerTrainingLogsLink.key} <= keys, keys


def test_a_retried_try_resumes_from_the_run_checkpoint(dag_run) -> None:
    from eksml.sagemaker.operators import SageMakerTrainOperator

    candidate = xcom(dag_run.run.run_id, "prepare_data")["candidates"]["tensorflow"]
    checkpoints = Path(candidate["checkpoint_uri"].removeprefix("file://"))
    assert json.loads((checkpoints / "latest.json").read_text())["epoch"] == 1
    written = {p: p.stat().st_mtime_ns for p in (checkpoints / "epoch-0001").rglob("*") if p.is_file()}
    assert written

    os.environ.update(EKSML_PROFILE="local", EKSML_STORE_URI=dag_run.store.as_uri())
    try:
        pushed: dict[str, object] = {}
        ti = SimpleNamespace(
            dag_id="fashion_mnist_training",
            task_id="train_sagemaker_tensorflow",
            try_number=2,
            xcom_push=lambda key, value: pushed.update({key: value}),
        )
        op = SageMakerTrainOperator(
            task_id="train_sagemaker_tensorflow", spec=candidate["spec"], instance_type="ml.m5.xlarge"
        )
        result = op.execute({"ti": ti, "run_id": dag_run.run.run_id, "params": CONF})
    finally:
        os.environ.pop("EKSML_PROFILE", None)
        os.environ.pop("EKSML_STORE_URI", None)
    assert result["status"] == "Completed" and "-t2-" in result["training_job_name"]
    # Epoch 1 came from the checkpoint: its files were not trained and written again.
    assert {p: p.stat().st_mtime_ns for p in written} == written
    assert "metrics.json" in result["files"]
    # A local job has no console page: each extra link's value is pushed empty, never left missing.
    assert pushed and set(pushed.values()) == {None}


MXNET_VENV = ROOT / ".venvs" / "mxnet-horovod"


@pytest.mark.skipif(not (MXNET_VENV / "bin" / "horovodrun").exists(), reason="no mxnet-horovod virtualenv")
def test_horovod_under_the_contract_like_sagemaker_mpi(dataset_dir, tmp_path, airflow_db) -> None:
    """Two Horovod ranks (SageMaker MPI's processes per host) find everything through the contract."""
    from airflow.sdk import ObjectStoragePath

    from eksml.dataprep import prepare_data
    from eksml.sagemaker.contract import run_training_locally, unpack_model_artifact
    from eksml.settings import load_settings
    from eksml.specs import training_spec
    from eksml.storage import store_path

    settings = load_settings({"profile": "local", "store_uri": (tmp_path / "store").as_uri()})
    data_uri = f"{settings.data_root}/i1"
    prepare_data(store_path(str(dataset_dir), settings), store_path(data_uri, settings))
    version = "20261129T000000-mxnet-5e5e5e"
    spec = training_spec(
        framework="mxnet",
        data_uri=data_uri,
        model_uri=f"{settings.store_uri}/staging/fashion-mnist/{version}",
        checkpoint_uri=f"{settings.store_uri}/checkpoints/fashion-mnist/{version}",
        epochs=1,
        batch_size=64,
        learning_rate=0.01,
        gpus=0,
        workers=2,
        limit_train=2000,
        limit_test=500,
    )
    assert spec.total_processes == 2
    result = run_training_locally(spec, settings, job_name="fashion-mnist-training-mxnet-t1-local-0a0b0c0d")
    staging = tmp_path / "store" / "staging" / "fashion-mnist" / version
    files = unpack_model_artifact(store_path(result.model_artifact, settings), ObjectStoragePath(staging.as_uri()))
    assert {"model-symbol.json", "model-0000.params", "model.onnx", "metrics.json"} <= set(files)
    metrics = json.loads((staging / "metrics.json").read_text())
    assert metrics["train_images"] == 2000 and metrics["test_images"] == 500
    assert metrics["test_accuracy"] > 0.25
