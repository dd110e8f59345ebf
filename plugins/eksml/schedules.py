"""The training DAG's time schedule: weekly retraining whose run ids carry the week they train.

Airflow 3 names scheduled and backfill runs after ``run_after``, which for a data-interval
timetable is the interval's *end* (``Timetable.generate_run_id`` in ``airflow/timetables/base.py``):
the run ``backfill__2026-10-19T03:00:00+00:00`` trained the week that *starts* on 10-12, and
its logical date says 10-12. Here both read the same: the id names the logical date (the
interval's start), as Airflow 2's ids did. Manual and asset-triggered runs keep Airflow's ids.

A custom timetable must be registered by a plugin (``eksml.plugin``) for the scheduler to
deserialize the DAG; it subclasses Airflow's core timetable, which is what plugins register.
"""

from __future__ import annotations

from typing import Any

from airflow.timetables.interval import CronDataIntervalTimetable

#: Retraining cadence: Mondays 03:00 UTC, each run covering the week before it.
WEEKLY_RETRAINING_CRON = "0 3 * * 1"


class LogicalDateCronTimetable(CronDataIntervalTimetable):
    """Airflow's cron data-interval timetable, with run ids named after the logical date."""

    def generate_run_id(self, *, run_type: Any, run_after: Any, data_interval: Any, **extra: Any) -> str:
        if data_interval is None:
            return super().generate_run_id(run_type=run_type, run_after=run_after, data_interval=None, **extra)
        return run_type.generate_run_id(suffix=data_interval.start.isoformat())


def weekly_retraining() -> LogicalDateCronTimetable:
    """The training DAG's time schedule (combined with its data asset in the DAG file)."""
    return LogicalDateCronTimetable(WEEKLY_RETRAINING_CRON, timezone="UTC")
