"""trainkit.store against a real S3 API: a moto server on loopback, reached the way the training
images reach S3 (s3fs, endpoint from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainkit import store
from trainkit.checkpoints import CheckpointStore


@pytest.fixture
def bucket(moto_server: str, moto_bucket, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    # The S3-specific variable wins over the general one (which points nowhere here).
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_server)
    return f"s3://{moto_bucket('trainkit-store')}"


def test_json_exists_remove_on_s3(bucket: str) -> None:
    uri = store.join(bucket, "runs", "r1", "metrics.json")
    store.remove(uri)
    assert not store.exists(uri)
    store.write_json(uri, {"test_accuracy": 0.91})
    assert store.exists(uri)
    assert store.read_json(uri) == {"test_accuracy": 0.91}
    assert store.remove(uri) is True and not store.exists(uri)


def test_directories_and_checkpoints_on_s3(bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "epoch"
    (src / "saved_model").mkdir(parents=True)
    (src / "saved_model" / "saved_model.pb").write_bytes(b"pb")
    (src / "model.keras").write_bytes(b"keras")
    ckpt = CheckpointStore(store.join(bucket, "ckpt-run"))
    ckpt.save(1, src, [{"epoch": 1}])
    ckpt.save(2, src, [{"epoch": 1}, {"epoch": 2}])
    assert CheckpointStore(store.join(bucket, "ckpt-run")).latest_epoch() == 2
    back = ckpt.restore(2)
    assert (back / "saved_model" / "saved_model.pb").read_bytes() == b"pb"
    assert (back / "model.keras").read_bytes() == b"keras"
