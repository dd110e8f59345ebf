"""The same data and registry code against S3 (a real moto server on loopback)."""

from __future__ import annotations

import boto3
import pytest

from eksml.dataprep import IDX_FILES, prepare_data
from eksml.registry import ModelRegistry
from eksml.settings import load_settings
from eksml.storage import store_path


@pytest.fixture
def s3_settings(moto_server):
    boto3.client("s3", endpoint_url=moto_server, region_name="us-west-2",
                 aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(
        Bucket="eksml-test", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    return load_settings({"store_uri": "s3://eksml-test/ml"})


def test_prepare_and_register_on_s3(dataset_dir, s3_settings, moto_server):
    source = store_path(str(dataset_dir), s3_settings)
    target = store_path(f"{s3_settings.data_root}/i1", s3_settings)
    assert sorted(prepare_data(source, target)["copied"]) == sorted(IDX_FILES)
    assert prepare_data(source, target)["copied"] == []
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-west-2",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    head = s3.head_object(Bucket="eksml-test", Key="ml/data/fashion-mnist/i1/train-images-idx3-ubyte.gz")
    assert head["ContentLength"] == (dataset_dir / "train-images-idx3-ubyte.gz").stat().st_size

    staging = store_path("s3://eksml-test/ml/staging/fashion-mnist/v1", s3_settings)
    (staging / "model.keras").write_bytes(b"weights")
    (staging / "metrics.json").write_text('{"test_accuracy": 0.9}')
    registry = ModelRegistry(store_path(s3_settings.models_root, s3_settings))
    registry.register("v1", staging, {"run_id": "r1"})
    assert registry.versions() == ["v1"]
    assert registry.promote("v1", test_accuracy=0.9, reason="first")["version"] == "v1"
    assert registry.champion()["uri"].startswith("s3://eksml-test/ml/models/fashion-mnist/v1")
    body = s3.get_object(Bucket="eksml-test", Key="ml/models/fashion-mnist/v1/model.keras")["Body"].read()
    assert body == b"weights"
