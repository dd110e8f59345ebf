"""The CreateTrainingJob request rendered from a training spec, field by field, and the bad
input it refuses before any SageMaker API is called."""

from __future__ import annotations

import dataclasses
import json

import pytest

from eksml.sagemaker.images import training_image_uri
from eksml.sagemaker.request import SageMakerRequestError, build_training_request, default_output_uri
from eksml.settings import Settings
from eksml.specs import WorkloadSpec, training_spec

STORE = "s3://ml-bucket/eksml"
DATA = f"{STORE}/data/fashion-mnist/20261122T000000-20261129T000000"
STAGING = f"{STORE}/staging/fashion-mnist/20261129T000000-tensorflow-3f2a9c"
CKPT = f"{STORE}/checkpoints/fashion-mnist/20261129T000000-tensorflow-3f2a9c"
SOURCE = f"{STORE}/sagemaker/fashion-mnist/v/job/source/sourcedir.tar.gz"
JOB = "fashion-mnist-training-tensorflow-t1-manual-2026-11-29-1a2b3c4d"


ROLE = "arn:aws:iam::123456789012:role/eksml-sagemaker"


def settings(**changes) -> Settings:
    return Settings(
        **{"profile": "aws", "store_uri": STORE, "region": "eu-west-1", "sagemaker_role_arn": ROLE, **changes}
    )


def tf_spec(**kw) -> WorkloadSpec:
    args = dict(
        framework="tensorflow",
        data_uri=DATA,
        model_uri=STAGING,
        checkpoint_uri=CKPT,
        epochs=3,
        batch_size=256,
        learning_rate=0.002,
        gpus=1,
        limit_train=2000,
        limit_test=500,
    )
    args.update(kw)
    return training_spec(**args)


def mx_spec(**kw) -> WorkloadSpec:
    args = dict(
        framework="mxnet",
        data_uri=DATA,
        model_uri=STAGING.replace("tensorflow", "mxnet"),
        checkpoint_uri=CKPT.replace("tensorflow", "mxnet"),
        epochs=2,
        batch_size=64,
        learning_rate=0.01,
        gpus=4,
        workers=2,
    )
    args.update(kw)
    return training_spec(**args)


def build(spec=None, cfg=None, **kw):
    options = dict(
        instance_type="ml.g5.xlarge",
        job_name=JOB,
        source_s3_uri=SOURCE,
        tags={"eksml/dag-run-id": "manual__2026-11-29T00:00:00+00:00"},
    )
    options.update(kw)
    return build_training_request(spec or tf_spec(), cfg or settings(), **options)


def test_tensorflow_dlc_request_field_by_field() -> None:
    req = build()
    assert req["TrainingJobName"] == JOB
    assert req["AlgorithmSpecification"] == {
        "TrainingImage": "763104351884.dkr.ecr.eu-west-1.amazonaws.com/tensorflow-training:"
        "2.21.0-gpu-py312-cu129-amzn2023-sagemaker",
        "TrainingInputMode": "File",
    }
    assert req["RoleArn"] == "arn:aws:iam::123456789012:role/eksml-sagemaker"
    assert req["HyperParameters"] == {
        "epochs": "3",
        "batch-size": "256",
        "learning-rate": "0.002",
        "limit-train": "2000",
        "limit-test": "500",
        "sagemaker_program": '"train.py"',
        "sagemaker_submit_directory": json.dumps(SOURCE),
        "sagemaker_region": '"eu-west-1"',
        "sagemaker_job_name": json.dumps(JOB),
        "sagemaker_container_log_level": "20",
    }
    assert req["InputDataConfig"] == [
        {
            "ChannelName": "training",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": DATA + "/",
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
            "InputMode": "File",
            "CompressionType": "None",
        }
    ]
    assert req["OutputDataConfig"] == {
        "S3OutputPath": f"{STORE}/sagemaker/fashion-mnist/20261129T000000-tensorflow-3f2a9c"
    }
    assert req["ResourceConfig"] == {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50}
    assert req["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400}
    assert req["EnableManagedSpotTraining"] is False
    assert req["CheckpointConfig"] == {"S3Uri": CKPT, "LocalPath": "/opt/ml/checkpoints"}
    assert req["Environment"] == {"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    assert {"Key": "eksml/dag-run-id", "Value": "manual__2026-11-29T00:00:00+00:00"} in req["Tags"]
    assert {"Key": "eksml/framework", "Value": "tensorflow"} in req["Tags"]
    assert "VpcConfig" not in req


def test_no_location_argument_becomes_a_hyperparameter() -> None:
    hps = build()["HyperParameters"]
    assert not {"data-uri", "model-uri", "checkpoint-uri"} & set(hps)


def test_cpu_instance_picks_the_cpu_image() -> None:
    req = build(tf_spec(gpus=0), instance_type="ml.m5.xlarge")
    assert req["AlgorithmSpecification"]["TrainingImage"].endswith(
        "tensorflow-training:2.21.0-cpu-py312-amzn2023-sagemaker"
    )


def test_managed_spot_sets_wait_and_checkpoint() -> None:
    req = build(use_spot=True, max_runtime_s=3600, max_wait_s=7200)
    assert req["EnableManagedSpotTraining"] is True
    assert req["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert req["CheckpointConfig"]["S3Uri"] == CKPT


def test_spot_wait_defaults_to_twice_the_runtime() -> None:
    assert build(use_spot=True, max_runtime_s=1800)["StoppingCondition"]["MaxWaitTimeInSeconds"] == 3600


def test_mxnet_horovod_uses_mpi_distribution() -> None:
    req = build(mx_spec(), instance_type="ml.g5.12xlarge")
    assert req["AlgorithmSpecification"]["TrainingImage"] == (
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/mxnet-training:1.9.0-gpu-py38-cu112-ubuntu20.04-sagemaker"
    )
    assert req["ResourceConfig"]["InstanceCount"] == 2
    hps = req["HyperParameters"]
    assert hps["sagemaker_mpi_enabled"] == "true"
    assert hps["sagemaker_mpi_num_of_processes_per_host"] == "4"
    assert hps["sagemaker_mpi_custom_mpi_options"] == '""'
    assert hps["epochs"] == "2" and hps["batch-size"] == "64"


def test_mxnet_counts_can_be_overridden() -> None:
    req = build(mx_spec(gpus=1, workers=1), instance_type="ml.p3.8xlarge", instance_count=3, processes_per_host=2)
    assert req["ResourceConfig"]["InstanceCount"] == 3
    assert req["HyperParameters"]["sagemaker_mpi_num_of_processes_per_host"] == "2"


def test_vpc_from_settings() -> None:
    req = build(cfg=settings(sagemaker_subnets=("subnet-1", "subnet-2"), sagemaker_security_groups=("sg-1",)))
    assert req["VpcConfig"] == {"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1", "subnet-2"]}


def test_china_region_uses_its_registry_and_domain() -> None:
    uri = training_image_uri("tensorflow", "cn-north-1", gpu=False)
    assert uri.startswith("727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/tensorflow-training:")


def test_project_image_runs_our_entrypoint_with_the_contract_variables() -> None:
    req = build(image_source="project", source_s3_uri=None)
    assert req["AlgorithmSpecification"] == {
        "TrainingImage": "public.ecr.aws/eksml/tf-fashion-mnist:0.1.0",
        "TrainingInputMode": "File",
        "ContainerEntrypoint": ["python", "/opt/eksml/train.py"],
    }
    env = req["Environment"]
    assert env["SM_MODEL_DIR"] == "/opt/ml/model"
    assert env["SM_CHANNEL_TRAINING"] == "/opt/ml/input/data/training"
    assert env["SM_INPUT_CONFIG_DIR"] == "/opt/ml/input/config"
    assert not any(k.startswith("sagemaker_") for k in req["HyperParameters"])


def test_default_output_is_beside_staging_not_inside() -> None:
    out = default_output_uri(tf_spec(), settings())
    assert out == f"{STORE}/sagemaker/fashion-mnist/20261129T000000-tensorflow-3f2a9c"
    assert not out.startswith(STAGING)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"instance_type": "ml.g99.huge"}, "unknown SageMaker training instance type"),
        ({"instance_type": "g5.xlarge"}, "unknown SageMaker training instance type"),
        ({"instance_count": 0}, "instance_count must be >= 1"),
        ({"instance_count": 2}, "runs on one instance"),
        ({"job_name": "bad_name!"}, "invalid SageMaker training job name"),
        ({"job_name": "x" * 64}, "invalid SageMaker training job name"),
        ({"job_name": "-leading"}, "invalid SageMaker training job name"),
        ({"max_runtime_s": 0}, "max_runtime_s must be >= 1"),
        ({"max_runtime_s": 30 * 86400}, "max_runtime_s must be >= 1 and <= 2419200"),
        ({"use_spot": True, "max_runtime_s": 3600, "max_wait_s": 600}, "must be >= max_runtime_s"),
        ({"max_wait_s": 600}, "managed spot training only"),
        ({"image_source": "docker"}, "image_source must be"),
        ({"source_s3_uri": None}, "source_s3_uri must be an s3:// URI"),
        ({"tags": {"aws:reserved": "x"}}, "invalid tag key"),
        ({"tags": {"run": "a" * 300}}, "invalid value"),
        ({"instance_type": "ml.m5.xlarge"}, "asks 1 GPU(s) per replica; ml.m5.xlarge has 0"),
    ],
)
def test_bad_tensorflow_input_is_rejected(changes: dict, message: str) -> None:
    with pytest.raises(SageMakerRequestError) as err:
        build(**changes)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("spec", "changes", "message"),
    [
        ("mx", {"instance_count": 0}, "instance_count must be >= 1"),
        ("mx", {"processes_per_host": 0}, "processes_per_host must be >= 1"),
        ("mx", {"instance_type": "ml.g5.xlarge"}, "asks 4 GPU(s) per replica; ml.g5.xlarge has 1"),
        ("mx1", {"instance_type": "ml.g5.xlarge", "processes_per_host": 2}, "2 Horovod processes per host need 2 GPUs"),
        ("mx", {"instance_type": "ml.g5.12xlarge", "image_source": "project"}, "needs SageMaker's MPI launcher"),
    ],
)
def test_bad_horovod_input_is_rejected(spec: str, changes: dict, message: str) -> None:
    chosen = mx_spec() if spec == "mx" else mx_spec(gpus=1, workers=1)
    with pytest.raises(SageMakerRequestError) as err:
        build(chosen, **{"instance_type": "ml.g5.12xlarge", **changes})
    assert message in str(err.value)


def test_spot_without_checkpoint_is_rejected() -> None:
    spec = WorkloadSpec(
        name="train-tensorflow",
        image="tf-fashion-mnist",
        script="train.py",
        framework="tensorflow",
        locations={"data_uri": DATA, "model_uri": STAGING},
        hyperparameters={"epochs": 1},
    )
    with pytest.raises(SageMakerRequestError, match="needs a checkpoint S3 URI"):
        build(spec, use_spot=True)
    assert "CheckpointConfig" not in build(spec)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (Settings(profile="local"), "must be an s3:// URI"),
        (settings(region="mars-north-1"), "no Deep Learning Container registry known for region 'mars-north-1'"),
        (
            settings(sagemaker_role_arn="eksml-sagemaker"),
            "not an IAM role ARN: 'eksml-sagemaker'; set EKSML_SAGEMAKER_ROLE_ARN",
        ),
        # the default is no role at all: the placeholder that used to pass is gone, and the message names the setting
        (
            settings(sagemaker_role_arn=Settings().sagemaker_role_arn),
            "sagemaker_role_arn is not set: set EKSML_SAGEMAKER_ROLE_ARN",
        ),
        (settings(sagemaker_subnets=("subnet-1",)), "must be set together"),
    ],
)
def test_bad_settings_are_rejected(cfg: Settings, message: str) -> None:
    spec = (
        tf_spec()
        if cfg.store_uri.startswith("s3://")
        else tf_spec(data_uri="file:///d", model_uri="file:///m/v", checkpoint_uri="file:///c")
    )
    with pytest.raises(SageMakerRequestError) as err:
        build(spec, cfg)
    assert message in str(err.value)


def test_free_arguments_are_rejected() -> None:
    """SageMaker passes only named hyperparameters on; a bare flag would be lost."""
    spec = WorkloadSpec(
        name="t",
        image="mxnet-horovod",
        script="train.py",
        framework="mxnet",
        locations={"data_uri": DATA, "model_uri": STAGING},
        args=("--no-onnx",),
    )
    with pytest.raises(SageMakerRequestError, match=r"free arguments \['--no-onnx'\] have no SageMaker form"):
        build(spec)


def test_a_workload_without_framework_is_rejected() -> None:
    spec = WorkloadSpec(
        name="t", image="inference", script="serve.py", locations={"data_uri": DATA, "model_uri": STAGING}
    )
    with pytest.raises(SageMakerRequestError, match="not a training workload: framework None"):
        build(spec)


def test_framework_is_read_from_the_spec_not_from_its_image() -> None:
    """A project image of another name still trains with its framework's Deep Learning Container."""
    spec = dataclasses.replace(tf_spec(), image="tf-fashion-mnist-nightly")
    req = build(spec)
    assert "/tensorflow-training:" in req["AlgorithmSpecification"]["TrainingImage"]
    project = build(spec, image_source="project")["AlgorithmSpecification"]["TrainingImage"]
    assert project.endswith("/tf-fashion-mnist-nightly:" + settings().image_tag)


def test_hyperparameters_and_locations_are_taken_by_name() -> None:
    """A location is never a hyperparameter, and a value that looks like a flag is still a value."""
    spec = dataclasses.replace(
        tf_spec(),
        locations={"data_uri": DATA, "model_uri": STAGING, "checkpoint_uri": CKPT},
        hyperparameters={"tag": "--x"},
    )
    req = build(spec)
    user = {k: v for k, v in req["HyperParameters"].items() if not k.startswith("sagemaker_")}
    assert user == {"tag": '"--x"'}
    assert req["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == DATA + "/"
