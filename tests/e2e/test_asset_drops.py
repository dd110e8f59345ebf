"""Every upstream data drop is accounted for, with the real scheduler.

Drops announced while the training DAG is busy (``max_active_runs=1``) used to be lost: the
scheduler keeps one queue row per (asset, DAG) (``AssetDagRunQueue``, primary key
``asset_id, target_dag_id``), and an event posted while that row waits is merged into it
(``AssetManager._queue_dagruns_nonpartitioned_slow_path``: ``session.merge``, which keeps the
row's ``created_at``). The run the row finally creates takes ``triggered_date = created_at``
and consumes only the events up to it (``SchedulerJobRunner._create_dag_runs_asset_triggered``:
``AssetEvent.timestamp <= triggered_date``), then deletes the row: the later events start no
run and leave nothing queued. The next event's run lists them (its window starts at the
previous asset run's ``run_after``) but used to train only its own drop.

This test posts four drops, three of them while a run is busy, and traces each one to the
version that trained it or to a "superseded by" line in the log and note of a run. The table
it builds is kept as ``artifacts/asset-drops.md``.
"""

from __future__ import annotations

import shutil
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from dag_runs import backfill_training

pytestmark = pytest.mark.slow

TRAINING_DAG = "fashion_mnist_training"
TRAINING_DATA = "fashion_mnist_training_data"
BUSY_CONF = {"epochs": 2, "limit_train": 2000, "limit_test": 500}
SETTLE_TIMEOUT = 1200
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
WEEK = timedelta(days=7)
SNAPSHOTS = (1000, 1500, 2000)  # training images of three weekly drops of the real data set


def post_drop(api, asset_id: int, folder: Path) -> dict:
    response = api.request("POST", "/assets/events", json={"asset_id": asset_id, "extra": {"uri": folder.as_uri()}})
    assert response.status_code == 200, response.text
    return response.json()


def settle(api, timeout: float = SETTLE_TIMEOUT) -> None:
    """Wait until no run is queued or running and no asset event waits in the queue."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        try:
            active = [r for r in api.runs(TRAINING_DAG) if r["state"] in ("queued", "running")]
            queued = api.get(f"/dags/{TRAINING_DAG}/assets/queuedEvents")["total_entries"]
        except httpx.TimeoutException:  # the API server answers slowly while the machine trains
            quiet = 0
            continue
        quiet = quiet + 1 if not active and not queued else 0
        if quiet >= 3:  # three polls in a row: a run being created between two polls is seen
            return
        time.sleep(4)
    raise AssertionError(f"{TRAINING_DAG} still busy after {timeout:.0f} s")


def trace(server, api, drops: list[dict]) -> tuple[list[dict], str]:
    """Each drop's fate: runs listing its event, the version that trained it, the lines naming it."""
    versions = server.versions()
    runs = [r for r in api.runs(TRAINING_DAG) if r["run_type"] == "asset_triggered"]
    listed: dict[str, list[str]] = {}
    logs: dict[str, str] = {}
    notes: dict[str, str] = {r["dag_run_id"]: r.get("note") or "" for r in runs}
    for run in runs:
        run_id = run["dag_run_id"]
        events = api.get(f"/dags/{TRAINING_DAG}/dagRuns/{run_id}/upstreamAssetEvents")["asset_events"]
        listed[run_id] = [(e.get("extra") or {}).get("uri") for e in events]
        logs[run_id] = api.task_log(TRAINING_DAG, run_id, "validate_params")

    def named(run_id: str, uri: str) -> bool:
        """The run's note names the drop, or (a note holds 1,000 characters) says the rest are in
        the first task's log, and that log names it."""
        note = notes[run_id]
        return uri in note or ("more drops: see the validate_params log" in note and uri in logs[run_id])

    rows = []
    for n, drop in enumerate(drops, 1):
        uri = drop["uri"]
        trained = [name for name, meta in versions.items() if meta.get("source_uri") == uri]
        superseded = {
            run_id: next((line for line in log.splitlines() if f"drop {uri} (" in line and "superseded by" in line), "")
            for run_id, log in logs.items()
        }
        rows.append(
            {
                "event": n,
                "uri": uri,
                "listed_by": [run_id for run_id, uris in listed.items() if uri in uris],
                "trained_as": trained,
                "superseded_in": [run_id for run_id, line in superseded.items() if line and named(run_id, uri)],
                "line": next((line.strip() for line in superseded.values() if line), ""),
            }
        )
    table = [
        "| event | drop | listed by run | trained as version | superseded in run (log + note) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        table.append(
            f"| {row['event']} | {Path(row['uri']).name} | {', '.join(row['listed_by']) or '-'} | "
            f"{', '.join(row['trained_as']) or '-'} | {', '.join(row['superseded_in']) or '-'} |"
        )
    # Only this test's drops: the session's server also holds events other tests posted (one of
    # them malformed on purpose, its 'uri' not even a string), each accounted for by its own test.
    ours = {drop["uri"] for drop in drops}
    unused = []
    for run_id, uris in listed.items():
        trained_here = {meta.get("source_uri") for meta in versions.values() if meta.get("run_id") == run_id}
        unused += [f"{run_id}: {u}" for u in uris if u in ours and u not in trained_here and not named(run_id, u)]
    return rows, "\n".join(table) + ("\n\nlisted but neither trained nor named: " + "; ".join(unused) if unused else "")


def test_drops_posted_while_a_run_is_busy_are_each_trained_or_named_superseded(airflow_server, tmp_path_factory):
    server, api = airflow_server, airflow_server.api
    api.http.timeout = httpx.Timeout(300)  # a loaded machine's API server answers in minutes, not seconds
    folders = []
    for n in range(1, 5):
        folder = tmp_path_factory.mktemp("drops") / f"drop-{n}"
        shutil.copytree(server.drop, folder)
        folders.append(folder)
    asset_id = api.asset_id(TRAINING_DATA)
    api.unpause(TRAINING_DAG)
    settle(api)  # the scheduled run that unpausing creates
    busy = api.trigger(TRAINING_DAG, BUSY_CONF)
    deadline = time.monotonic() + 300
    while api.get(f"/dags/{TRAINING_DAG}/dagRuns/{busy['dag_run_id']}")["state"] != "running":
        assert time.monotonic() < deadline, "the busy run never started"
        time.sleep(2)
    drops = [post_drop(api, asset_id, folders[0])]
    time.sleep(0.5)
    drops.append(post_drop(api, asset_id, folders[1]))
    time.sleep(5)
    drops.append(post_drop(api, asset_id, folders[2]))
    settle(api)
    drops.append(post_drop(api, asset_id, folders[3]))
    settle(api)

    rows, table = trace(server, api, [{"uri": f.as_uri()} for f in folders])
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "asset-drops.md").write_text(table + "\n")
    print(table)
    lost = [row for row in rows if not row["trained_as"] and not row["superseded_in"]]
    assert not lost, f"drops neither trained nor named superseded:\n{table}"
    assert "listed but neither trained nor named" not in table, table
    # The newest drop is always trained; a superseded one names the drop that replaced it.
    assert rows[-1]["trained_as"], table
    for row in rows:
        if row["superseded_in"]:
            assert "superseded by" in row["line"], row


def test_a_backfill_trains_each_interval_on_the_snapshot_current_at_its_end(airflow_server, monkeypatch):
    """Three dated drops (growing subsets of the real data, landed by the landing DAG's own
    function), a backfill over their three weekly intervals: three versions on three snapshots."""
    from eksml.assets import land_drop
    from eksml.settings import resolve_settings

    server, api = airflow_server, airflow_server.api
    for key, value in server.standalone.env.items():
        if key.startswith("EKSML_"):
            monkeypatch.setenv(key, value)
    now = datetime.now(timezone.utc)
    monday = (now - timedelta(days=now.weekday())).replace(hour=3, minute=0, second=0, microsecond=0)
    ends = [monday - (30 - n) * WEEK for n in range(3)]  # weeks no other test's drop is dated in
    drops = [
        land_drop(resolve_settings(), end - timedelta(days=1), train_images=count)
        for end, count in zip(ends, SNAPSHOTS, strict=True)
    ]
    before = {r["dag_run_id"] for r in api.runs(TRAINING_DAG)}
    cli = backfill_training(server, api, ends[0] - WEEK, ends[-1] - WEEK, {"epochs": 1})
    assert cli.returncode == 0, cli.stdout[-2000:] + cli.stderr[-3000:]
    runs = sorted(
        (r for r in api.runs(TRAINING_DAG) if r["run_type"] == "backfill" and r["dag_run_id"] not in before),
        key=lambda r: r["logical_date"],
    )
    assert len(runs) == 3, [r["dag_run_id"] for r in runs]
    rows = []
    for run, drop, count in zip(runs, drops, SNAPSHOTS, strict=True):
        finished = api.wait_run(TRAINING_DAG, run["dag_run_id"], timeout=SETTLE_TIMEOUT)
        assert finished["state"] == "success", api.task_states(TRAINING_DAG, run["dag_run_id"])
        (meta,) = [m for m in server.versions().values() if m["run_id"] == run["dag_run_id"]]
        assert meta["source_uri"] == drop["uri"]
        assert meta["metrics"]["train_images"] == count
        rows.append(
            f"| {run['dag_run_id']} | {run['data_interval_end']} | {Path(drop['uri']).name} | {count} | "
            f"{meta['version']} | {meta['metrics']['test_accuracy']:.4f} |"
        )
    table = "\n".join(
        ["| run | interval end | drop | train images | version | test accuracy |", "|---|---|---|---|---|---|", *rows]
    )
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "backfill-snapshots.md").write_text(table + "\n")
    print(table)


def test_a_failed_run_says_in_its_note_which_task_failed_and_why(airflow_server, tmp_path):
    """The reason used to be only in the first task's log; the note now says it, first line whole."""
    api = airflow_server.api
    empty = tmp_path / "no-data-here"
    empty.mkdir()
    run = api.trigger(TRAINING_DAG, {"epochs": 1, "data_uri": str(empty)})
    finished = api.wait_run(TRAINING_DAG, run["dag_run_id"], timeout=SETTLE_TIMEOUT)
    assert finished["state"] == "failed"
    note = finished.get("note") or api.get(f"/dags/{TRAINING_DAG}/dagRuns/{run['dag_run_id']}")["note"] or ""
    first = note.split("\n", 1)[0]
    assert first.startswith("**FAILED** in validate_params: no Fashion-MNIST IDX files at"), note
    assert str(empty) in first
