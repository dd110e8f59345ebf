"""The training DAG's run ids name the week a run trains (its logical date), through the
scheduler's view of the DAG: serialized and deserialized, which needs the plugin's registration."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEEK_START = datetime(2026, 10, 12, 3, tzinfo=timezone.utc)  # a Monday, 03:00 UTC
WEEK_END = datetime(2026, 10, 19, 3, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def scheduler_timetable():
    """The timetable as the scheduler and backfill code get it: from the serialized DAG."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    dagbag = DagBag(dag_folder=str(ROOT / "dags" / "fashion_mnist_training.py"))
    assert dagbag.import_errors == {}
    serialized = DagSerialization.to_dict(dagbag.dags["fashion_mnist_training"])
    return DagSerialization.from_dict(serialized).timetable


@pytest.mark.parametrize("run_type", ["BACKFILL_JOB", "SCHEDULED"])
def test_backfill_and_scheduled_run_ids_name_the_interval_start(scheduler_timetable, run_type):
    from airflow.timetables.base import DataInterval
    from airflow.utils.types import DagRunType

    kind = DagRunType[run_type]
    run_id = scheduler_timetable.generate_run_id(
        run_type=kind, run_after=WEEK_END, data_interval=DataInterval(WEEK_START, WEEK_END), partition_key=None
    )
    assert run_id == f"{kind.value}__2026-10-12T03:00:00+00:00"


def test_asset_triggered_run_ids_stay_airflows(scheduler_timetable):
    from airflow.timetables.base import DataInterval
    from airflow.utils.types import DagRunType

    run_id = scheduler_timetable.generate_run_id(
        run_type=DagRunType.ASSET_TRIGGERED,
        run_after=WEEK_END,
        data_interval=DataInterval(WEEK_END, WEEK_END),
        partition_key=None,
    )
    assert run_id.startswith("asset_triggered__2026-10-19T03:00:00+00:00")


def test_the_schedule_is_weekly_over_the_previous_week(scheduler_timetable):
    from airflow.timetables.base import DataInterval, TimeRestriction

    info = scheduler_timetable.next_dagrun_info(
        last_automated_data_interval=DataInterval(WEEK_START, WEEK_END),
        restriction=TimeRestriction(earliest=None, latest=None, catchup=True),
    )
    assert (info.data_interval.start, info.data_interval.end) == (
        WEEK_END,
        datetime(2026, 10, 26, 3, tzinfo=timezone.utc),
    )
