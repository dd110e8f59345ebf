"""The training DAG end to end in the local profile: real data, real training, real registry.

Runs the DAG with ``dag.test()`` (a real Airflow run in-process): the training workload runs
as a process in the image's virtualenv, exactly the entrypoint and arguments a pod gets.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from dag_runs import task_states, training_dag

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import inference_models as im  # noqa: E402

TF_VENV = ROOT / ".venvs" / "tf-fashion-mnist"
INFERENCE_VENV = ROOT / ".venvs" / "inference"
FAST_CONF = {"epochs": 2, "limit_train": 4000, "limit_test": 1000}

pytestmark = pytest.mark.skipif(
    not (TF_VENV.exists() and INFERENCE_VENV.exists()),
    reason="image virtualenvs missing: run scripts/setup.sh",
)


def _run_and_check(store: Path, dataset_dir: Path, conf: dict, limit_test: int) -> dict:
    run = training_dag().test(run_conf=conf)
    states = task_states(run)
    assert str(run.state) == "success", states
    models = store / "models" / "fashion-mnist"
    versions = [p for p in models.iterdir() if (p / "metadata.json").exists()]
    assert len(versions) == 1
    meta = json.loads((versions[0] / "metadata.json").read_text())
    accuracy = meta["metrics"]["test_accuracy"]
    assert meta["params"]["epochs"] == conf.get("epochs", 5) and meta["run_id"] == run.run_id
    assert meta["data_uri"].startswith((store / "data").as_uri())
    # The stored model, loaded fresh, predicts exactly what its metrics say.
    fresh = im.saved_model_accuracy(versions[0] / "saved_model", dataset_dir, limit_test)
    assert fresh == pytest.approx(accuracy, abs=1e-6)
    champion = json.loads((models / "champion.json").read_text())
    assert champion["version"] == versions[0].name
    assert states["publish_champion"] == "success" and states["outcome"] == "success"
    # The champion asset event tells the deployment (and a person) what was promoted.
    event = _champion_event(run.run_id)
    assert event["version"] == versions[0].name and event["test_accuracy"] == pytest.approx(accuracy)
    return meta


def _champion_event(run_id: str) -> dict:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        (event,) = session.query(AssetEvent).filter(AssetEvent.source_run_id == run_id).all()
        return dict(event.extra)


def _outcome_summary(run) -> dict:
    (ti,) = [ti for ti in run.get_task_instances() if ti.task_id == "outcome"]
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter(
                XComModel.dag_id == run.dag_id,
                XComModel.run_id == run.run_id,
                XComModel.task_id == "outcome",
                XComModel.key == "summary",
            )
            .one()
        )
        return XComModel.deserialize_value(row)


def test_a_refused_candidate_is_visible_in_the_run(store, dataset_dir):
    """Second run against a champion with an unreachable margin: outcome skipped, saying why."""
    quick = {"epochs": 1, "limit_train": 1000, "limit_test": 200}
    first = training_dag().test(run_conf=quick)
    assert task_states(first)["outcome"] == "success"
    second = training_dag().test(run_conf={**quick, "min_improvement": 0.5})
    states = task_states(second)
    assert str(second.state) == "success", states
    assert states["promote"] == "success" and states["publish_champion"] == "skipped"
    assert states["outcome"] == "skipped"
    summary = _outcome_summary(second)
    assert summary["outcome"] == "refused" and 0.1 < summary["test_accuracy"] <= 1.0
    assert summary["champion_version"] == _outcome_summary(first)["version"]


def test_fast_slice_end_to_end(store, dataset_dir):
    meta = _run_and_check(store, dataset_dir, FAST_CONF, FAST_CONF["limit_test"])
    assert meta["metrics"]["test_accuracy"] > 0.6  # 2 epochs on 4k images: far above 0.1 chance
    assert (store / "models" / "fashion-mnist" / meta["version"] / "confusion_matrix.png").exists()


@pytest.mark.slow
def test_full_data_default_params(store, dataset_dir):
    meta = _run_and_check(store, dataset_dir, {}, 10000)
    assert meta["metrics"]["train_images"] == 60000
    assert meta["metrics"]["test_accuracy"] >= 0.91


@pytest.mark.parametrize(
    "conf, message",
    [
        ({"epochs": 0}, "epochs"),
        ({"learning_rate": -0.5}, "learning_rate"),
    ],
)
def test_invalid_params_refused_before_a_run(store, conf, message):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError, match=message):
        training_dag().test(run_conf=conf)
    assert not (store / "models").exists()


def _failed_at_validate(store, conf, monkeypatch=None):
    run = training_dag().test(run_conf=conf)
    states = task_states(run)
    assert str(run.state) == "failed"
    assert states["validate_params"] == "failed"
    assert states["prepare_data"] == "upstream_failed"
    assert not (store / "models").exists()
    return run


def test_data_uri_without_idx_files_fails_first_task(store, tmp_path, caplog):
    empty = tmp_path / "empty"
    empty.mkdir()
    _failed_at_validate(store, {"data_uri": str(empty)})
    assert "no Fashion-MNIST IDX files" in caplog.text


def test_corrupt_gzip_fails_first_task(store, tmp_path, dataset_dir, caplog):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(dataset_dir, bad)
    (bad / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    _failed_at_validate(store, {"data_uri": str(bad)})
    assert "train-labels-idx1-ubyte.gz: not a valid gzip file" in caplog.text


def test_unknown_profile_fails_first_task(store, monkeypatch, caplog):
    monkeypatch.setenv("EKSML_PROFILE", "gcp")
    _failed_at_validate(store, FAST_CONF)
    assert "unknown profile 'gcp'" in caplog.text


def test_s3_stores_on_a_moto_server(moto_client, moto_bucket, monkeypatch, tmp_path, dataset_dir, airflow_db):
    """The same DAG with data and model stores on s3:// (a real moto server on loopback)."""
    s3 = moto_client("s3")
    moto_bucket("eksml-e2e")
    monkeypatch.setenv("EKSML_STORE_URI", "s3://eksml-e2e/ml")
    monkeypatch.setenv("EKSML_PROFILE", "local")
    run = training_dag().test(run_conf=FAST_CONF)
    assert str(run.state) == "success", task_states(run)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="eksml-e2e", Prefix="ml/models/fashion-mnist/")["Contents"]]
    metadata_keys = [k for k in keys if k.endswith("/metadata.json")]
    assert len(metadata_keys) == 1 and "ml/models/fashion-mnist/champion.json" in keys
    prefix = metadata_keys[0].rsplit("/", 1)[0]
    local = tmp_path / "downloaded"
    for key in keys:
        if key.startswith(prefix + "/"):
            target = local / key[len(prefix) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file("eksml-e2e", key, str(target))
    meta = json.loads((local / "metadata.json").read_text())
    assert "uri" not in meta and prefix == f"ml/models/fashion-mnist/{meta['version']}"  # no store URI inside
    assert len(meta["data_files"]) == 4 and meta["data_uri"].startswith("s3://eksml-e2e/ml/data/")
    assert im.saved_model_accuracy(local / "saved_model", dataset_dir, FAST_CONF["limit_test"]) == pytest.approx(
        meta["metrics"]["test_accuracy"], abs=1e-6
    )
