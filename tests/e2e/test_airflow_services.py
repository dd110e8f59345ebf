"""The operating paths of the training DAG against a real ``airflow standalone``: the DAGs
load, bad input through each door is refused, the example upstream DAG announces its drop,
the time schedule, a REST-triggered run with a conf, an asset event posted through the REST
API, a backfill over three intervals, and ``TriggerDagRunOperator``.

Every training run trains a real (small) model in the local profile. The tests run in file
order and wait for each run: the training DAG allows one active run at a time, and the
machine trains one model at a time.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timedelta, timezone

import pytest
from dag_runs import backfill_training

from eksml.runs import interval_key

pytestmark = pytest.mark.slow

TRAINING_DAG = "fashion_mnist_training"
LANDING_DAG = "upstream_data_landing"
TRIGGER_DAG = "trigger_training_with_conf"
TRAINING_DATA = "fashion_mnist_training_data"
FAST_CONF = {"epochs": 1, "limit_train": 2000, "limit_test": 500}
WEEK = timedelta(days=7)
RUN_TIMEOUT = 420


def last_monday_0300(now: datetime) -> datetime:
    """End of the newest complete interval of the weekly schedule ``0 3 * * 1`` (UTC)."""
    monday = (now - timedelta(days=now.weekday())).replace(hour=3, minute=0, second=0, microsecond=0)
    return monday if monday <= now else monday - WEEK


def backfill_window(weeks_back: int) -> tuple[datetime, datetime]:
    """Three weekly logical dates, the first ``weeks_back`` weeks before the newest interval."""
    first = last_monday_0300(datetime.now(timezone.utc)) - weeks_back * WEEK
    return first, first + 2 * WEEK


@pytest.fixture(scope="module")
def server(airflow_server):
    return airflow_server


@pytest.fixture(scope="module")
def api(server):
    return server.api


def succeeded(api, dag_id: str, run_id: str) -> dict:
    run = api.wait_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    assert run["state"] == "success", api.task_states(dag_id, run_id)
    return run


def versions_of(server, run_id: str) -> dict[str, dict]:
    return {name: meta for name, meta in server.versions().items() if meta["run_id"] == run_id}


def run_ids(api) -> set[str]:
    return {r["dag_run_id"] for r in api.runs(TRAINING_DAG)}


# --- the DAGs, and bad input refused before anything runs ---------------------------------
def test_dags_load_without_import_errors(api):
    assert api.get("/importErrors")["total_entries"] == 0
    dags = {d["dag_id"]: d for d in api.get("/dags", limit=100)["dags"]}
    assert {TRAINING_DAG, LANDING_DAG, TRIGGER_DAG, "model_deployment"} <= set(dags)
    assert dags[TRAINING_DAG]["owners"] == ["ml-platform"]


@pytest.mark.parametrize(
    "conf, param",
    [
        ({"epochs": 0}, "epochs"),
        ({"framework": "pytorch"}, "framework"),
        ({"learning_rate": "fast"}, "learning_rate"),
        ({"epocs": 1}, "unknown conf key 'epocs' (did you mean 'epochs'?)"),
    ],
)
def test_invalid_conf_is_refused_by_the_rest_api(api, conf, param):
    before = run_ids(api)
    response = api.request("POST", f"/dags/{TRAINING_DAG}/dagRuns", json={"logical_date": None, "conf": conf})
    assert response.status_code == 400, response.text
    assert param in response.json()["detail"]
    assert run_ids(api) == before


def test_backfill_bad_input_is_refused_and_creates_nothing(server, api):
    first, _ = backfill_window(9)
    runs_before = run_ids(api)
    backfills_before = api.get("/backfills", dag_id=TRAINING_DAG)["total_entries"]
    empty = {
        "dag_id": TRAINING_DAG,
        "from_date": (first + timedelta(days=1)).isoformat(),
        "to_date": (first + timedelta(days=5)).isoformat(),
        "dag_run_conf": FAST_CONF,
    }
    response = api.request("POST", "/backfills", json=empty)
    assert response.status_code == 422, response.text
    assert "No runs to create" in response.text
    bad_conf = {
        "dag_id": TRAINING_DAG,
        "from_date": first.isoformat(),
        "to_date": first.isoformat(),
        "dag_run_conf": {"epochs": 0},
    }
    response = api.request("POST", "/backfills", json=bad_conf)
    assert response.status_code == 422, response.text
    assert "epochs" in response.text
    cli = server.airflow_cli(
        "backfill", "create", "--dag-id", TRAINING_DAG, "--from-date", empty["from_date"], "--to-date", empty["to_date"]
    )
    assert cli.returncode == 1, cli.stdout[-2000:] + cli.stderr[-2000:]
    assert "No runs to create" in cli.stdout + cli.stderr
    assert api.get("/backfills", dag_id=TRAINING_DAG)["total_entries"] == backfills_before
    assert run_ids(api) == runs_before


def test_upstream_dag_lands_the_drop_and_announces_it(server, api):
    """The example upstream DAG copies a validated drop and emits the asset event with its uri.

    The training DAG is still paused here, so no run starts now; the next asset-triggered run
    receives this event too, and trains on the newest event's drop (shown with a REST-posted
    event below).
    """
    api.unpause(LANDING_DAG)
    landing = api.trigger(LANDING_DAG, {})
    succeeded(api, LANDING_DAG, landing["dag_run_id"])
    (event,) = api.get("/assets/events", source_dag_id=LANDING_DAG)["asset_events"]
    assert event["source_run_id"] == landing["dag_run_id"]
    landed = event["extra"]["uri"]
    assert landed.startswith((server.store / "landing").as_uri() + "/")
    assert event["extra"]["train_images"] == 2000 and event["extra"]["test_images"] == 500
    folder = server.store / landed.removeprefix(server.store.as_uri() + "/")
    assert sorted(p.name for p in folder.iterdir())[-2:] == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert event["asset_id"] == api.asset_id(TRAINING_DATA)


# --- runs ----------------------------------------------------------------------------------
def test_unpausing_creates_one_scheduled_run_that_trains_only_with_the_opt_in(server, api):
    """Unpausing (catchup off) creates exactly one scheduled run, the newest complete week; without
    the scheduled_training opt-in it trains nothing and its note says why."""
    api.unpause(TRAINING_DAG)
    run = api.wait_for_new_run(TRAINING_DAG, set(), "scheduled", timeout=180)
    end = last_monday_0300(datetime.now(timezone.utc))
    assert datetime.fromisoformat(run["data_interval_start"]) == end - WEEK
    assert datetime.fromisoformat(run["data_interval_end"]) == end
    finished = succeeded(api, TRAINING_DAG, run["dag_run_id"])
    states = api.task_states(TRAINING_DAG, run["dag_run_id"])
    assert states["validate_params"] == "skipped" and states["train_tensorflow"] == "skipped", states
    assert states["outcome"] == "skipped"
    assert "scheduled training is off" in (finished.get("note") or ""), finished
    assert versions_of(server, run["dag_run_id"]) == {}
    assert [r["run_type"] for r in api.runs(TRAINING_DAG)].count("scheduled") == 1


def test_rest_triggered_run_with_conf_completes(server, api):
    before = set(server.versions())
    run = api.trigger(TRAINING_DAG, FAST_CONF)
    assert run["conf"] == FAST_CONF and run["run_type"] == "manual"
    succeeded(api, TRAINING_DAG, run["dag_run_id"])
    new = versions_of(server, run["dag_run_id"])
    assert set(server.versions()) - before == set(new)
    (meta,) = new.values()
    assert {k: meta["params"][k] for k in FAST_CONF} == FAST_CONF
    assert meta["metrics"]["train_images"] == 2000 and meta["metrics"]["test_images"] == 500
    assert 0.1 < meta["metrics"]["test_accuracy"] <= 1.0


def test_asset_event_posted_through_rest_starts_a_training_run(server, api, tmp_path_factory):
    """An external system announces a drop; the run that follows trains on exactly that drop."""
    drop = tmp_path_factory.mktemp("external") / "drop-2026-11"
    shutil.copytree(server.drop, drop)
    known = run_ids(api)
    response = api.request(
        "POST", "/assets/events", json={"asset_id": api.asset_id(TRAINING_DATA), "extra": {"uri": drop.as_uri()}}
    )
    assert response.status_code == 200, response.text
    run = api.wait_for_new_run(TRAINING_DAG, known, "asset_triggered")
    succeeded(api, TRAINING_DAG, run["dag_run_id"])
    events = api.get(f"/dags/{TRAINING_DAG}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents")["asset_events"]
    newest = max(events, key=lambda e: e["timestamp"])
    assert newest["extra"] == {"uri": drop.as_uri(), "from_rest_api": True}
    (meta,) = versions_of(server, run["dag_run_id"]).values()
    assert meta["source_uri"] == drop.as_uri()


def test_malformed_asset_event_fails_the_first_task_and_registers_nothing(server, api):
    before = server.versions()
    known = run_ids(api)
    response = api.request(
        "POST", "/assets/events", json={"asset_id": api.asset_id(TRAINING_DATA), "extra": {"uri": 5}}
    )
    assert response.status_code == 200, response.text  # Airflow stores any JSON extra; the DAG judges it
    run = api.wait_for_new_run(TRAINING_DAG, known, "asset_triggered")
    finished = api.wait_run(TRAINING_DAG, run["dag_run_id"], timeout=RUN_TIMEOUT)
    states = api.task_states(TRAINING_DAG, run["dag_run_id"])
    assert finished["state"] == "failed"
    assert states["validate_params"] == "failed" and states["prepare_data"] == "upstream_failed", states
    log = api.task_log(TRAINING_DAG, run["dag_run_id"], "validate_params")
    assert "training-data event extra 'uri' must be a string, got int: 5" in log
    assert server.versions() == before


def test_backfill_over_three_intervals_yields_three_versions_in_order(server, api):
    first, last = backfill_window(6)
    before = set(server.versions())
    cli = backfill_training(server, api, first, last, FAST_CONF)
    assert cli.returncode == 0, cli.stdout[-2000:] + cli.stderr[-3000:]
    runs = sorted((r for r in api.runs(TRAINING_DAG) if r["run_type"] == "backfill"), key=lambda r: r["logical_date"])
    assert [datetime.fromisoformat(r["logical_date"]) for r in runs] == [first, first + WEEK, first + 2 * WEEK]
    # Run ids are Airflow's, named after the interval's end, as docs/operations.md tells users
    # (models/backfill.py, _create_backfill_dag_run_non_partitioned: DagRun.generate_run_id(run_after)).
    ends = [datetime.fromisoformat(r["data_interval_end"]).isoformat() for r in runs]
    assert [r["dag_run_id"] for r in runs] == [f"backfill__{end}" for end in ends]
    assert all(r["conf"] == FAST_CONF for r in runs)
    finished = [succeeded(api, TRAINING_DAG, r["dag_run_id"]) for r in runs]
    # max_active_runs=1: each run started after the previous one ended, in interval order.
    for earlier, later in zip(finished, finished[1:], strict=False):
        assert datetime.fromisoformat(earlier["end_date"]) <= datetime.fromisoformat(later["start_date"])
    versions = [versions_of(server, r["dag_run_id"]) for r in runs]
    assert [len(v) for v in versions] == [1, 1, 1]
    names = [next(iter(v)) for v in versions]
    assert names == sorted(names) and set(server.versions()) - before == set(names)
    for version, run in zip(versions, runs, strict=True):
        (meta,) = version.values()
        assert meta["data_interval"] == [
            datetime.fromisoformat(run[k]).isoformat() for k in ("data_interval_start", "data_interval_end")
        ]
        # Each interval's data version is content-addressed: <interval>-<digest of the four files>.
        start, end = (datetime.fromisoformat(run[k]) for k in ("data_interval_start", "data_interval_end"))
        assert meta["data_uri"].rsplit("/", 1)[-1].startswith(interval_key(start, end) + "-")


def test_rerunning_one_backfill_interval_leaves_the_others_alone(server, api):
    """Clearing a run re-registers its own version in place; no other version is touched."""
    runs = sorted((r for r in api.runs(TRAINING_DAG) if r["run_type"] == "backfill"), key=lambda r: r["logical_date"])
    assert len(runs) == 3
    files = {name: (server.models / name / "metadata.json").read_bytes() for name in server.versions()}
    middle = runs[1]["dag_run_id"]
    (rerun_version,) = versions_of(server, middle)
    response = api.request(
        "POST",
        f"/dags/{TRAINING_DAG}/clearTaskInstances",
        json={"dry_run": False, "dag_run_id": middle, "only_failed": False, "reset_dag_runs": True},
    )
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 60
    while api.get(f"/dags/{TRAINING_DAG}/dagRuns/{middle}")["state"] == "success" and time.monotonic() < deadline:
        time.sleep(1)
    succeeded(api, TRAINING_DAG, middle)
    after = {name: (server.models / name / "metadata.json").read_bytes() for name in server.versions()}
    assert set(after) == set(files)
    assert {name for name in files if after[name] != files[name]} == {rerun_version}
    old, new = json.loads(files[rerun_version]), json.loads(after[rerun_version])
    assert new["registered_at"] > old["registered_at"] and new["run_id"] == old["run_id"] == middle


def test_non_backfill_runs_never_overlapped(api):
    """The DAG's max_active_runs=1 held for every scheduled, manual and asset-triggered run."""
    runs = sorted(
        (r for r in api.runs(TRAINING_DAG) if r["run_type"] != "backfill" and r["start_date"]),
        key=lambda r: r["start_date"],
    )
    assert len(runs) >= 4
    for earlier, later in zip(runs, runs[1:], strict=False):
        assert datetime.fromisoformat(earlier["end_date"]) <= datetime.fromisoformat(later["start_date"])


def test_trigger_dag_run_operator_starts_training_with_its_conf(server, api):
    api.unpause(TRIGGER_DAG)
    known = run_ids(api)
    parent = api.trigger(TRIGGER_DAG, {"epochs": 2})
    child = api.wait_for_new_run(TRAINING_DAG, known, "operator_triggered")
    assert child["conf"] == {
        "framework": "tensorflow",
        "trainer": "kubernetes",
        "epochs": 2,
        "limit_train": 2000,
        "limit_test": 500,
    }
    succeeded(api, TRAINING_DAG, child["dag_run_id"])
    succeeded(api, TRIGGER_DAG, parent["dag_run_id"])  # it waited for the training run, deferred
    (meta,) = versions_of(server, child["dag_run_id"]).values()
    assert meta["params"]["epochs"] == 2
