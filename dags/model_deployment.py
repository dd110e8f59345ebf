"""Deploy the champion Fashion-MNIST model for inference, and smoke-test it.

Scheduled on the champion-model asset, so every promotion is deployed. Every DAG starts
paused: **unpause this one** (toggle in the UI, or `airflow dags unpause model_deployment`)
for promotions to be deployed; while paused, asset events queue and the newest is deployed
once unpaused. A version serves only after real predictions passed the smoke test; a failed
deploy leaves the previous one serving and the champion pointer unchanged.

**Rolling back.** List the registered versions with their test accuracy (`*` marks the
champion): `PYTHONPATH=plugins .venv/bin/python -m eksml.registry list`. Then trigger this
DAG with that version: the trigger form's *Model version* field, or
`airflow dags trigger model_deployment -c '{"version": "<version>"}'`. Once the version serves
(behind the smoke test) it becomes the champion; the promotion history records the rollback.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task

from eksml.assets import CHAMPION_MODEL
from eksml.dag_defaults import default_args
from eksml.serving.operators import DeployModelOperator

with DAG(
    dag_id="model_deployment",
    description="Serve the champion model (or a chosen version) and smoke-test it",
    doc_md=__doc__,
    schedule=[CHAMPION_MODEL],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=1, execution_timeout=timedelta(minutes=30)),
    params={
        "version": Param(
            None,
            type=["null", "string"],
            pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
            maxLength=128,
            title="Model version",
            description="Redeploy this registered version (rollback). Empty: deploy the current champion.",
        ),
    },
    render_template_as_native_obj=True,
    tags=["deployment", "inference", "fashion-mnist"],
) as dag:

    @task(multiple_outputs=False, retries=0)
    def resolve_version(params=None) -> dict:
        """The champion, or the requested version (not yet champion: that waits for the smoke test).
        In the kubernetes profile the cluster and the store are checked first."""
        from eksml.preflight_kubernetes import require_reachable
        from eksml.registry import resolve_deployment
        from eksml.settings import resolve_settings

        settings = resolve_settings()
        require_reachable(settings)
        return resolve_deployment(params.get("version"), settings)

    @task(multiple_outputs=False, retries=1)
    def record_champion(pointer: dict, dag_run=None) -> dict:
        """A requested version that now serves becomes the champion (rollback or pin); the run's
        note says which version went live."""
        from eksml.registry import record_deployment
        from eksml.run_notes import note_deployment
        from eksml.settings import resolve_settings

        settings = resolve_settings()
        recorded = record_deployment(pointer, settings)
        note_deployment(dag_run, pointer, settings)
        return recorded

    pointer = resolve_version()
    deploy = DeployModelOperator(
        task_id="deploy_and_smoke_test",
        model_uri="{{ ti.xcom_pull(task_ids='resolve_version')['uri'] }}",
        version="{{ ti.xcom_pull(task_ids='resolve_version')['version'] }}",
        # metadata.json was read once, by resolve_version: its data_uri is the smoke test's data.
        data_uri="{{ ti.xcom_pull(task_ids='resolve_version')['data_uri'] }}",
    )
    pointer >> deploy >> record_champion(pointer)
