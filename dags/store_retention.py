"""Store retention: delete the staging/ and checkpoints/ folders of finished runs.

Daily. A folder untouched for ``retention_days`` (setting ``EKSML_RETENTION_DAYS`` or the
``eksml_settings`` Variable; 7 by default, 0 keeps everything) is deleted; registered model
versions under models/ are never touched. Trigger with ``dry_run`` to see what would go.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task

from eksml.dag_defaults import default_args

with DAG(
    dag_id="store_retention",
    description="Delete staging and checkpoint folders of finished runs after the retention period",
    doc_md=__doc__,
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=1, execution_timeout=timedelta(hours=1)),
    params={
        "dry_run": Param(
            False, type="boolean", title="Dry run", description="List what would be deleted, delete nothing."
        )
    },
    tags=["maintenance", "storage"],
) as dag:

    @task(multiple_outputs=False)
    def apply_retention(params=None) -> dict:
        """Delete what is older than the retention period; return the URIs deleted and kept."""
        from eksml.retention import apply_retention as apply
        from eksml.settings import resolve_settings

        return apply(resolve_settings(), dry_run=bool(params["dry_run"]))

    apply_retention()
