"""Requests of the sagemaker-endpoint deployment target, field by field, and what they refuse."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from eksml.sagemaker.endpoint import build_endpoint_requests, package_for_serving
from eksml.sagemaker.request import SageMakerRequestError
from eksml.settings import Settings

SETTINGS = Settings(
    profile="aws",
    store_uri="s3://ml-bucket/eksml",
    region="us-east-1",
    sagemaker_role_arn="arn:aws:iam::123456789012:role/eksml-sagemaker",
)
DATA = "s3://ml-bucket/eksml/sagemaker/fashion-mnist/v2/endpoint/model.tar.gz"


def test_model_config_and_endpoint() -> None:
    req = build_endpoint_requests(
        SETTINGS,
        endpoint_name="fashion-mnist",
        version="20261129T000000-tensorflow-3f2a9c",
        model_data_url=DATA,
        instance_type="ml.m5.large",
        instance_count=2,
    )
    name = req["Model"]["ModelName"]
    assert name.startswith("fashion-mnist-20261129T000000-tensorflow-3f2a9c-")
    assert req["Model"]["ExecutionRoleArn"] == SETTINGS.sagemaker_role_arn
    assert req["Model"]["PrimaryContainer"] == {
        "Image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:"
        "2.20.0-cpu-py312-amzn2023-sagemaker",
        "ModelDataUrl": DATA,
        "Mode": "SingleModel",
    }
    assert req["EndpointConfig"]["EndpointConfigName"] == name
    assert req["EndpointConfig"]["ProductionVariants"] == [
        {
            "VariantName": "AllTraffic",
            "ModelName": name,
            "InstanceType": "ml.m5.large",
            "InitialInstanceCount": 2,
            "InitialVariantWeight": 1.0,
        }
    ]
    assert req["Endpoint"]["EndpointName"] == "fashion-mnist"
    assert req["Endpoint"]["EndpointConfigName"] == name
    assert {"Key": "eksml/model-version", "Value": "20261129T000000-tensorflow-3f2a9c"} in req["Endpoint"]["Tags"]


def test_each_version_gets_its_own_model_and_config() -> None:
    a = build_endpoint_requests(SETTINGS, endpoint_name="fashion-mnist", version="v1", model_data_url=DATA)
    b = build_endpoint_requests(SETTINGS, endpoint_name="fashion-mnist", version="v2", model_data_url=DATA)
    assert a["Model"]["ModelName"] != b["Model"]["ModelName"]
    assert a["Endpoint"]["EndpointName"] == b["Endpoint"]["EndpointName"]


def test_gpu_hosting_uses_the_gpu_image() -> None:
    req = build_endpoint_requests(
        SETTINGS, endpoint_name="e", version="v", model_data_url=DATA, instance_type="ml.g4dn.xlarge"
    )
    assert req["Model"]["PrimaryContainer"]["Image"].endswith("2.20.0-gpu-py312-cu129-amzn2023-sagemaker")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"instance_type": "ml.x1.huge"}, "unknown hosting instance type"),
        ({"instance_count": 0}, "instance_count must be >= 1"),
        ({"endpoint_name": "bad_name"}, "invalid SageMaker endpoint name"),
        ({"model_data_url": "file:///tmp/model.tar.gz"}, "must be an s3:// URI"),
    ],
)
def test_bad_input_is_refused(changes: dict, message: str) -> None:
    args = {"endpoint_name": "fashion-mnist", "version": "v1", "model_data_url": DATA, **changes}
    with pytest.raises(ValueError, match=message):
        build_endpoint_requests(SETTINGS, **args)


def test_serving_archive_puts_the_saved_model_under_a_numeric_version(tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    version = tmp_path / "models" / "v1"
    (version / "saved_model" / "variables").mkdir(parents=True)
    (version / "saved_model" / "saved_model.pb").write_bytes(b"pb")
    (version / "saved_model" / "variables" / "variables.index").write_bytes(b"i")
    (version / "metrics.json").write_text("{}")
    target = ObjectStoragePath((tmp_path / "out" / "model.tar.gz").as_uri())
    (tmp_path / "out").mkdir()
    package_for_serving(ObjectStoragePath(version.as_uri()), target)
    with tarfile.open(tmp_path / "out" / "model.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["1/saved_model.pb", "1/variables/variables.index"]


def test_a_version_without_saved_model_cannot_be_served(tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "model-symbol.json").write_text("{}")
    with pytest.raises(SageMakerRequestError, match="only TensorFlow versions"):
        package_for_serving(
            ObjectStoragePath((tmp_path / "v1").as_uri()), ObjectStoragePath((tmp_path / "m.tar.gz").as_uri())
        )
