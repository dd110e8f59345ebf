"""What the end-to-end tests read of a ``dag.test()`` run and of the store it wrote."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from project_files import load_dag


def training_dag() -> Any:
    """The training DAG as the dag-processor loads it (a fresh DagBag: no import errors)."""
    return load_dag("fashion_mnist_training")


def task_states(run: Any) -> dict[str, str]:
    """State per task; a mapped task instance is named ``task[i]``."""
    return {
        ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): str(ti.state)
        for ti in run.get_task_instances()
    }


def registered_versions(store: Path) -> dict[str, dict]:
    """Registered model versions in a ``file://`` store: name -> metadata.json, in name order."""
    models = store / "models" / "fashion-mnist"
    if not models.exists():
        return {}
    return {
        p.name: json.loads((p / "metadata.json").read_text())
        for p in sorted(models.iterdir())
        if (p / "metadata.json").exists()
    }


def backfill_cli(server: Any, api: Any, *args: str, attempts: int = 5) -> Any:
    """``airflow backfill create <args>``, retried when SQLite refuses its write.

    On the SQLite database of ``airflow standalone`` the CLI can lose a write race with the
    scheduler ("database is locked", returned at once rather than after the busy timeout)
    after it has already committed the backfill row. That half-made backfill is cancelled,
    the scheduler started again if Airflow's own clean-up made it exit, and the command
    repeated; with PostgreSQL (the Docker stack) this does not happen.
    """
    for attempt in range(1, attempts + 1):
        cli = server.airflow_cli("backfill", "create", *args, "--reprocess-behavior", "failed")
        if cli.returncode == 0 or "database is locked" not in cli.stdout + cli.stderr:
            print(f"airflow backfill create: attempt {attempt}, rc {cli.returncode}")
            break
        for backfill in api.get("/backfills", dag_id="fashion_mnist_training")["backfills"]:
            if backfill["completed_at"] is None:
                api.request("PUT", f"/backfills/{backfill['id']}/cancel")
        time.sleep(2)
    if attempt > 1:
        # Airflow's clean-up of a half-made backfill deletes its runs, and a scheduler that was
        # examining one of them exits (ObjectDeletedError); standalone does not restart it.
        time.sleep(3)  # its exit takes a moment after the error
        if server.standalone.revive_scheduler():
            print("airflow backfill create: the scheduler had exited after the clean-up; started again")
    return cli


def backfill_training(server: Any, api: Any, first: Any, last: Any, conf: dict) -> Any:
    """``airflow backfill create`` of the training DAG from ``first`` to ``last`` (logical dates,
    both included), one run at a time, with ``conf``."""
    return backfill_cli(
        server,
        api,
        "--dag-id",
        "fashion_mnist_training",
        "--from-date",
        first.isoformat(),
        "--to-date",
        last.isoformat(),
        "--max-active-runs",
        "1",
        "--dag-run-conf",
        json.dumps(conf),
    )
