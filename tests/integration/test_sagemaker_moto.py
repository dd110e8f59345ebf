"""The SageMaker branch against a real moto server on loopback.

moto's training jobs are Completed at their first describe and write no model.tar.gz, so the
test puts a real one (a one-epoch training of the TF entrypoint on a slice of Fashion-MNIST) at
the location SageMaker reports for the job, ``<output>/<job>/output/model.tar.gz``.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from eksml.dataprep import prepare_data
from eksml.sagemaker.contract import ArtifactError, pack_model_dir
from eksml.sagemaker.request import default_output_uri, model_artifact_uri, sagemaker_job_name
from eksml.settings import load_settings
from eksml.specs import training_spec
from eksml.storage import store_path

ROOT = Path(__file__).resolve().parents[2]
TF_PYTHON = ROOT / ".venvs" / "tf-fashion-mnist" / "bin" / "python"
BUCKET = "eksml-sagemaker-test"
DAG_ID = "fashion_mnist_training"
RUN_ID = "manual__2026-11-29T00:00:00+00:00"

pytestmark = pytest.mark.skipif(
    not TF_PYTHON.exists(),
    reason="no tf-fashion-mnist virtualenv; build it with: bash images/build-local-venv.sh tf-fashion-mnist",
)


@pytest.fixture(scope="module")
def world(moto_client, moto_bucket, dataset_dir, tmp_path_factory):
    """An S3 store holding one data interval, a spec for it, and a really trained model archive."""
    moto_bucket(BUCKET)
    settings = load_settings(
        {
            "profile": "aws",
            "store_uri": f"s3://{BUCKET}/ml",
            "region": "us-west-2",
            "sagemaker_role_arn": "arn:aws:iam::123456789012:role/eksml-sagemaker",
        }
    )
    data_uri = f"{settings.data_root}/20261122T000000-20261129T000000"
    prepare_data(store_path(str(dataset_dir), settings), store_path(data_uri, settings))
    version = "20261129T000000-tensorflow-a1b2c3"
    spec = training_spec(
        framework="tensorflow",
        data_uri=data_uri,
        model_uri=f"s3://{BUCKET}/ml/staging/fashion-mnist/{version}",
        checkpoint_uri=f"s3://{BUCKET}/ml/checkpoints/fashion-mnist/{version}",
        epochs=1,
        batch_size=128,
        learning_rate=0.001,
        gpus=1,
        limit_train=2000,
        limit_test=500,
    )
    tmp = tmp_path_factory.mktemp("sm-moto")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT / "images" / "common"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [
            str(TF_PYTHON),
            str(ROOT / "images" / "tf-fashion-mnist" / "train.py"),
            "--data-uri",
            str(dataset_dir),
            "--model-uri",
            str(tmp / "model"),
            "--epochs",
            "1",
            "--limit-train",
            "2000",
            "--limit-test",
            "500",
        ],
        env=env,
        cwd=ROOT / "images" / "tf-fashion-mnist",
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    archive = pack_model_dir(tmp / "model", tmp / "model.tar.gz")
    return SimpleNamespace(
        settings=settings,
        spec=spec,
        archive=archive,
        model_dir=tmp / "model",
        s3=moto_client("s3"),
        sagemaker=moto_client("sagemaker"),
    )


def context(try_number: int) -> dict:
    ti = SimpleNamespace(dag_id=DAG_ID, task_id="train_sagemaker", try_number=try_number, xcoms={})
    ti.xcom_push = lambda key, value: ti.xcoms.__setitem__(key, value)
    return {"ti": ti, "run_id": RUN_ID}


def operator(world, **kw):
    from eksml.sagemaker.operators import SageMakerTrainOperator

    options = {"instance_type": "ml.g4dn.xlarge", "max_runtime_s": 3600, "check_interval": 1, **kw}
    return SageMakerTrainOperator(
        task_id="train_sagemaker", spec=world.spec.to_dict(), settings=world.settings, **options
    )


def put_artifact(world, try_number: int) -> str:
    """Upload the real model archive where SageMaker reports the artifact of this try's job."""
    job = sagemaker_job_name(DAG_ID, RUN_ID, try_number, "tensorflow")
    uri = model_artifact_uri(default_output_uri(world.spec, world.settings), job)
    bucket, key = uri[len("s3://") :].split("/", 1)
    world.s3.upload_file(str(world.archive), bucket, key)
    return uri


def staged_files(world) -> dict[str, bytes]:
    prefix = "ml/staging/fashion-mnist/20261129T000000-tensorflow-a1b2c3/"
    s3 = world.s3
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]
    return {k[len(prefix) :]: s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys}


def test_job_is_created_with_our_request_and_its_artifact_registered(world) -> None:
    artifact = put_artifact(world, try_number=1)
    op = operator(world, use_spot=True, deferrable=True)
    ctx = context(try_number=1)
    result = op.execute(ctx)

    job = sagemaker_job_name(DAG_ID, RUN_ID, 1, "tensorflow")
    assert result["training_job_name"] == job and result["status"] == "Completed"
    described = world.sagemaker.describe_training_job(TrainingJobName=job)
    sent = op.config
    for field in (
        "AlgorithmSpecification",
        "HyperParameters",
        "InputDataConfig",
        "OutputDataConfig",
        "ResourceConfig",
        "StoppingCondition",
        "CheckpointConfig",
        "RoleArn",
    ):
        got = described[field]
        if isinstance(got, dict):  # moto adds fields of its own (e.g. MetricDefinitions); compare ours
            got = {k: got.get(k) for k in sent[field]}
        assert got == sent[field], field
    assert described["AlgorithmSpecification"]["TrainingImage"].startswith(
        "763104351884.dkr.ecr.us-west-2.amazonaws.com/tensorflow-training:2.21.0-gpu"
    )
    assert described["HyperParameters"]["epochs"] == "1"
    assert described["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert described["ModelArtifacts"]["S3ModelArtifacts"] == artifact == result["model_artifact"]

    # The script-mode source the DLC downloads: our entrypoint and trainkit at the archive root.
    source = json.loads(sent["HyperParameters"]["sagemaker_submit_directory"])
    bucket, key = source[len("s3://") :].split("/", 1)
    body = world.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = set(tar.getnames())
    assert {"train.py", "training.py", "trainkit/cli.py", "trainkit/store.py", "requirements.txt"} <= names

    # Registration: the staging folder holds exactly the trained files, as the Kubernetes branch leaves them.
    staged = staged_files(world)
    local = {
        p.relative_to(world.model_dir).as_posix(): p.read_bytes() for p in world.model_dir.rglob("*") if p.is_file()
    }
    assert staged == local
    assert {"metrics.json", "model.keras", "saved_model/saved_model.pb"} <= set(staged)
    assert sorted(result["files"]) == sorted(local)
    assert ctx["ti"].xcoms["eksml_sagemaker_training_job"]["job_name"] == job


def test_deferred_wait_resumes_and_registers(world) -> None:
    """The triggerer's half: our trigger waits on the job at moto, and execute_complete registers."""
    from eksml.sagemaker.triggers import SageMakerTrainingTrigger

    put_artifact(world, try_number=2)
    first = operator(world, wait_for_completion=False)
    first.execute(context(try_number=2))  # creates the job (and, Completed at once in moto, registers)
    job = sagemaker_job_name(DAG_ID, RUN_ID, 2, "tensorflow")
    trigger = SageMakerTrainingTrigger(
        job_name=job, waiter_delay=1, waiter_max_attempts=3, aws_conn_id="aws_default", region_name="us-west-2"
    )

    async def first_event():
        async for event in trigger.run():
            return event.payload

    event = asyncio.run(first_event())
    assert event == {"status": "success", "job_name": job}
    resumed = operator(world)  # a fresh instance, as on the worker that resumes the task
    result = resumed.execute_complete(context(try_number=2), event)
    assert result["training_job_name"] == job and len(result["files"]) == len(staged_files(world))


def test_missing_artifact_fails_the_task_clearly(world) -> None:
    op = operator(world, deferrable=False)
    with pytest.raises(ArtifactError, match="model.tar.gz does not exist"):
        op.execute(context(try_number=3))


def test_bad_input_creates_no_job(world) -> None:
    from eksml.sagemaker.request import SageMakerRequestError

    before = world.sagemaker.list_training_jobs()["TrainingJobSummaries"]
    with pytest.raises(SageMakerRequestError, match="unknown SageMaker training instance type"):
        operator(world, instance_type="ml.gpu.large").execute(context(try_number=4))
    assert world.sagemaker.list_training_jobs()["TrainingJobSummaries"] == before
