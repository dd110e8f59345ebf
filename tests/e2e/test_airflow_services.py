"""The operating paths of the training DAG against a real ``airflow standalone``: the DAGs
load, the time schedule, REST-triggered runs with a conf, asset events (posted through the
REST API and emitted by the example upstream DAG), ``TriggerDagRunOperator``, backfills,
and bad input through each of those doors.

Each run trains a real (small) model in the local profile; the tests run in file order and
wait for each run, because the training DAG allows one active run at a time.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

pytestmark = pytest.mark.slow

TRAINING_DAG = "fashion_mnist_training"
FAST_CONF = {"epochs": 1, "limit_train": 2000, "limit_test": 500}

WEEK = timedelta(days=7)
RUN_TIMEOUT = 420


def last_monday_0300(now: datetime) -> datetime:
    """End of the newest complete interval of the weekly schedule ``0 3 * * 1`` (UTC)."""
    monday = (now - timedelta(days=now.weekday())).replace(hour=3, minute=0, second=0, microsecond=0)
    return monday if monday <= now else monday - WEEK


@pytest.fixture(scope="module")
def server(airflow_server):
    airflow_server.api.unpause(TRAINING_DAG)
    return airflow_server


def _succeeded(api, dag_id: str, run_id: str) -> dict:
    run = api.wait_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    assert run["state"] == "success", api.task_states(dag_id, run_id)
    return run


def _versions_of(server, run_id: str) -> dict[str, dict]:
    return {name: meta for name, meta in server.versions().items() if meta["run_id"] == run_id}


def test_dags_load_without_import_errors(server):
    assert server.api.get("/importErrors")["total_entries"] == 0
    dags = {d["dag_id"]: d for d in server.api.get("/dags", limit=100)["dags"]}
    assert {TRAINING_DAG, "upstream_data_landing", "trigger_training_with_conf", "model_deployment"} <= set(dags)
    assert dags[TRAINING_DAG]["is_paused"] is False
    assert dags[TRAINING_DAG]["owners"] == ["ml-platform"]


def test_time_schedule_runs_the_latest_interval(server):
    """Unpausing (catchup off) creates exactly one scheduled run: the newest complete week."""
    run = server.api.wait_for_new_run(TRAINING_DAG, set(), "scheduled", timeout=180)
    end = last_monday_0300(datetime.now(timezone.utc))
    assert datetime.fromisoformat(run["data_interval_end"]) == end
    assert datetime.fromisoformat(run["data_interval_start"]) == end - WEEK
    _succeeded(server.api, TRAINING_DAG, run["dag_run_id"])
    (meta,) = _versions_of(server, run["dag_run_id"]).values()
    assert meta["data_interval"] == [(end - WEEK).isoformat(), end.isoformat()]
    assert meta["params"]["epochs"] == 5 and meta["metrics"]["train_images"] == 2000  # DAG defaults, small drop
    scheduled = [r for r in server.api.runs(TRAINING_DAG) if r["run_type"] == "scheduled"]
    assert len(scheduled) == 1


@pytest.mark.parametrize("conf, param", [
    ({"epochs": 0}, "epochs"),
    ({"framework": "pytorch"}, "framework"),
    ({"learning_rate": "fast"}, "learning_rate"),
])
def test_invalid_conf_is_refused_by_the_rest_api(server, conf, param):
    before = len(server.api.runs(TRAINING_DAG))
    response = server.api.request("POST", f"/dags/{TRAINING_DAG}/dagRuns", json={"logical_date": None, "conf": conf})
    assert response.status_code == 400, response.text
    assert param in response.json()["detail"]
    assert len(server.api.runs(TRAINING_DAG)) == before


def test_rest_triggered_run_with_conf_completes(server):
    before = set(server.versions())
    run = server.api.trigger(TRAINING_DAG, FAST_CONF)
    assert run["conf"] == FAST_CONF
    _succeeded(server.api, TRAINING_DAG, run["dag_run_id"])
    new = _versions_of(server, run["dag_run_id"])
    assert set(server.versions()) - before == set(new)
    (meta,) = new.values()
    assert {k: meta["params"][k] for k in FAST_CONF} == FAST_CONF
    assert meta["metrics"]["train_images"] == 2000 and meta["metrics"]["test_images"] == 500
    assert 0.1 < meta["metrics"]["test_accuracy"] <= 1.0


def test_asset_event_posted_through_rest_starts_a_training_run(server, tmp_path_factory):
    """An external system announces a drop; the run that follows trains on that drop."""
    import shutil

    drop = tmp_path_factory.mktemp("external") / "drop-2026-11"
    shutil.copytree(server.drop, drop)
    known = {r["dag_run_id"] for r in server.api.runs(TRAINING_DAG)}
    asset_id = server.api.asset_id("fashion_mnist_training_data")
    response = server.api.request("POST", "/assets/events", json={"asset_id": asset_id, "extra": {"uri": drop.as_uri()}})
    assert response.status_code == 200, response.text
    run = server.api.wait_for_new_run(TRAINING_DAG, known, "asset_triggered")
    _succeeded(server.api, TRAINING_DAG, run["dag_run_id"])
    events = server.api.get(f"/dags/{TRAINING_DAG}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents")["asset_events"]
    assert [e["extra"]["uri"] for e in events] == [drop.as_uri()]
    (meta,) = _versions_of(server, run["dag_run_id"]).values()
    assert meta["source_uri"] == drop.as_uri()


def test_malformed_asset_event_fails_the_first_task_and_registers_nothing(server):
    before = server.versions()
    known = {r["dag_run_id"] for r in server.api.runs(TRAINING_DAG)}
    asset_id = server.api.asset_id("fashion_mnist_training_data")
    response = server.api.request("POST", "/assets/events", json={"asset_id": asset_id, "extra": {"uri": 5}})
    assert response.status_code == 200, response.text  # Airflow stores any JSON extra; the DAG judges it
    run = server.api.wait_for_new_run(TRAINING_DAG, known, "asset_triggered")
    finished = server.api.wait_run(TRAINING_DAG, run["dag_run_id"], timeout=RUN_TIMEOUT)
    states = server.api.task_states(TRAINING_DAG, run["dag_run_id"])
    assert finished["state"] == "failed"
    assert states["validate_params"] == "failed" and states["prepare_data"] == "upstream_failed", states
    log = server.api.task_log(TRAINING_DAG, run["dag_run_id"], "validate_params")
    assert "training-data event extra 'uri' must be a string, got int: 5" in log
    assert server.versions() == before


def test_upstream_dag_lands_data_and_its_event_starts_training(server):
    api = server.api
    api.unpause("upstream_data_landing")
    known = {r["dag_run_id"] for r in api.runs(TRAINING_DAG)}
    landing = api.trigger("upstream_data_landing", {})
    _succeeded(api, "upstream_data_landing", landing["dag_run_id"])
    extra = api.get(f"/dags/upstream_data_landing/dagRuns/{landing['dag_run_id']}/taskInstances/land_and_announce")
    assert extra["state"] == "success"
    run = api.wait_for_new_run(TRAINING_DAG, known, "asset_triggered")
    _succeeded(api, TRAINING_DAG, run["dag_run_id"])
    (event,) = api.get(f"/dags/{TRAINING_DAG}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents")["asset_events"]
    assert event["source_dag_id"] == "upstream_data_landing" and event["source_run_id"] == landing["dag_run_id"]
    landed = event["extra"]["uri"]
    assert landed.startswith((server.store / "landing").as_uri())
    assert event["extra"]["train_images"] == 2000
    (meta,) = _versions_of(server, run["dag_run_id"]).values()
    assert meta["source_uri"] == landed


def test_trigger_dag_run_operator_passes_its_conf(server):
    api = server.api
    api.unpause("trigger_training_with_conf")
    known = {r["dag_run_id"] for r in api.runs(TRAINING_DAG)}
    parent = api.trigger("trigger_training_with_conf", {"epochs": 2})
    child = api.wait_for_new_run(TRAINING_DAG, known, "manual")
    assert child["conf"] == {"framework": "tensorflow", "trainer": "kubernetes", "epochs": 2,
                             "limit_train": 2000, "limit_test": 500}
    _succeeded(api, TRAINING_DAG, child["dag_run_id"])
    _succeeded(api, "trigger_training_with_conf", parent["dag_run_id"])
    (meta,) = _versions_of(server, child["dag_run_id"]).values()
    assert meta["params"]["epochs"] == 2


def _backfill_window(weeks_back: int) -> tuple[datetime, datetime]:
    """Three weekly logical dates, ``weeks_back`` weeks before the newest complete interval."""
    last = last_monday_0300(datetime.now(timezone.utc))
    first = last - weeks_back * WEEK
    return first, first + 2 * WEEK


def test_backfill_bad_input_is_refused_and_creates_nothing(server):
    api = server.api
    first, _ = _backfill_window(9)
    before = api.get("/backfills", dag_id=TRAINING_DAG)["total_entries"]
    empty = {"dag_id": TRAINING_DAG, "from_date": (first + timedelta(days=1)).isoformat(),
             "to_date": (first + timedelta(days=5)).isoformat(), "dag_run_conf": FAST_CONF}
    response = api.request("POST", "/backfills", json=empty)
    assert response.status_code == 422, response.text
    assert "No runs to create" in response.text
    bad_conf = {"dag_id": TRAINING_DAG, "from_date": first.isoformat(), "to_date": first.isoformat(),
                "dag_run_conf": {"epochs": 0}}
    response = api.request("POST", "/backfills", json=bad_conf)
    assert response.status_code == 422, response.text
    assert "epochs" in response.text
    cli = server.airflow_cli("backfill", "create", "--dag-id", TRAINING_DAG, "--from-date", empty["from_date"],
                             "--to-date", empty["to_date"])
    assert cli.returncode == 1 and "No runs to create" in cli.stdout + cli.stderr, cli.stdout[-2000:] + cli.stderr[-2000:]
    assert api.get("/backfills", dag_id=TRAINING_DAG)["total_entries"] == before
    assert not [r for r in api.runs(TRAINING_DAG) if r["run_type"] == "backfill"]


def test_backfill_over_three_intervals_yields_three_versions_in_order(server):
    api = server.api
    first, last = _backfill_window(6)
    cli = server.airflow_cli("backfill", "create", "--dag-id", TRAINING_DAG, "--from-date", first.isoformat(),
                             "--to-date", last.isoformat(), "--max-active-runs", "1",
                             "--dag-run-conf", json.dumps(FAST_CONF))
    assert cli.returncode == 0, cli.stdout[-2000:] + cli.stderr[-3000:]
    runs = []
    for _ in range(60):
        runs = [r for r in api.runs(TRAINING_DAG) if r["run_type"] == "backfill"]
        if len(runs) == 3:
            break
        time.sleep(2)
    assert len(runs) == 3, runs
    runs.sort(key=lambda r: r["logical_date"])
    assert [datetime.fromisoformat(r["logical_date"]) for r in runs] == [first, first + WEEK, first + 2 * WEEK]
    finished = [_succeeded(api, TRAINING_DAG, r["dag_run_id"]) for r in runs]
    # max_active_runs=1: each run started after the previous one ended, in interval order.
    for earlier, later in zip(finished, finished[1:]):
        assert datetime.fromisoformat(earlier["end_date"]) <= datetime.fromisoformat(later["start_date"])
    versions = [next(iter(_versions_of(server, r["dag_run_id"]).items())) for r in runs]
    names = [name for name, _ in versions]
    assert names == sorted(names) and len(set(names)) == 3
    for (name, meta), run in zip(versions, runs):
        assert meta["data_interval"] == [datetime.fromisoformat(run["data_interval_start"]).isoformat(),
                                         datetime.fromisoformat(run["data_interval_end"]).isoformat()]
        assert meta["params"]["epochs"] == 1
