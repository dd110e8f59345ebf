"""The same data and registry code against S3 (a real moto server on loopback)."""

from __future__ import annotations

import pytest

from eksml.contract import IDX_RANKS
from eksml.dataprep import prepare_data
from eksml.registry import ModelRegistry
from eksml.settings import load_settings
from eksml.storage import store_path


@pytest.fixture
def s3_settings(moto_bucket):
    return load_settings({"store_uri": f"s3://{moto_bucket('eksml-test')}/ml"})


def test_prepare_and_register_on_s3(dataset_dir, s3_settings, moto_client):
    source = store_path(str(dataset_dir), s3_settings)
    target = store_path(f"{s3_settings.data_root}/i1", s3_settings)
    assert sorted(prepare_data(source, target)["copied"]) == sorted(IDX_RANKS)
    assert prepare_data(source, target)["copied"] == []
    s3 = moto_client("s3")
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


def test_retention_on_s3_deletes_scratch_never_models(s3_settings, moto_client):
    from datetime import datetime, timedelta, timezone

    from eksml.retention import apply_retention

    s3 = moto_client("s3")
    keys = [
        f"retention/{k}"
        for k in (
            "staging/fashion-mnist/v9/model.keras",
            "checkpoints/fashion-mnist/v9/epoch-0001/model.keras",
            "models/fashion-mnist/v9/model.keras",
            "models/fashion-mnist/v9/metadata.json",
        )
    ]
    for key in keys:
        s3.put_object(Bucket="eksml-test", Key=key, Body=b"x")
    settings = s3_settings.replace(store_uri="s3://eksml-test/retention", retention_days=2)
    assert apply_retention(settings)["deleted"] == []  # just written: kept
    later = datetime.now(timezone.utc) + timedelta(days=3)
    deleted = apply_retention(settings, now=later)["deleted"]
    assert sorted(deleted) == [
        "s3://eksml-test/retention/checkpoints/fashion-mnist/v9",
        "s3://eksml-test/retention/staging/fashion-mnist/v9",
    ]
    left = {o["Key"] for o in s3.list_objects_v2(Bucket="eksml-test", Prefix="retention/")["Contents"]}
    assert set(keys[2:]) <= left and not set(keys[:2]) & left
