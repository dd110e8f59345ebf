"""Hourly clean-up of stray ephemeral clusters (aws profile).

A training run's ephemeral cluster is deleted by the run itself; this DAG deletes the ones a run
could not (marked failed by hand, a dead scheduler, a failed delete): clusters tagged as
ephemeral whose run is no longer running or that are older than ``max_age_hours``, and the
CloudFormation stacks such a cluster left behind. It logs what it found with the hourly cost.
In the local profile its first task is skipped: there are no clusters.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task
from airflow.sdk.exceptions import AirflowSkipException

from eksml.cluster.lifecycle import EksctlClusterOperator
from eksml.dag_defaults import default_args

with DAG(
    dag_id="eks_janitor",
    description="Delete stray ephemeral EKS clusters and their stacks",
    doc_md=__doc__,
    schedule="@hourly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=1, retry_delay=timedelta(minutes=5), pool="eks_lifecycle"),
    tags=["cluster", "eks", "cleanup"],
    params={
        "max_age_hours": Param(
            24, type="number", minimum=1, title="Age limit (hours)", description="An older ephemeral cluster is a stray"
        ),
    },
) as dag:

    @task(multiple_outputs=False, execution_timeout=timedelta(minutes=5))
    def find_strays(params=None, ti=None) -> dict[str, list]:
        """Ephemeral clusters whose run is over (or too old), and stacks left without their cluster."""
        import logging
        from datetime import UTC

        from eksml.cluster.janitor import sweep
        from eksml.settings import resolve_settings

        if resolve_settings().profile != "aws":
            raise AirflowSkipException("local profile: no EKS clusters to clean up")
        return sweep(
            float(params["max_age_hours"]), ti.get_dagrun_state, datetime.now(UTC), logging.getLogger(__name__).info
        )

    @task(execution_timeout=timedelta(minutes=5))
    def delete_stack(name: str) -> str:
        """CloudFormation delete of a stack whose cluster is gone (the provider's operator takes its
        connection when the DAG is parsed; the project's connection is a run-time setting)."""
        from eksml.cluster.janitor import delete_stack as delete

        return delete(name)

    @task
    def stray_clusters(found: dict) -> list[dict]:
        return found["clusters"]

    @task
    def lone_stacks(found: dict) -> list[str]:
        return found["stacks"]

    found = find_strays()
    EksctlClusterOperator.partial(task_id="delete_cluster", action="delete").expand(cluster=stray_clusters(found))
    delete_stack.expand(name=lone_stacks(found))
