"""Fashion-MNIST retraining: validate -> prepare data -> train (Kubernetes or SageMaker)
-> evaluate against the champion -> register -> promote -> publish the champion asset.

Runs weekly or whenever the training-data asset is updated, whichever comes first. All
logic lives in the ``eksml`` package under plugins/; this file only wires tasks.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, AssetOrTimeSchedule, CronDataIntervalTimetable, TriggerRule, task

from eksml.assets import CHAMPION_MODEL, TRAINING_DATA
from eksml.cluster.operators import ClusterAddonsOperator, GpuCapacityOperator
from eksml.dag_defaults import default_args
from eksml.eksctl.operators import EksctlClusterOperator
from eksml.kubernetes.operators import GpuTrainingPodOperator, MPIJobOperator, WorkloadPodOperator
from eksml.params import airflow_params
from eksml.sagemaker.operators import SageMakerTrainOperator

with DAG(
    dag_id="fashion_mnist_training",
    description="Train, evaluate, register and promote Fashion-MNIST models",
    doc_md=__doc__,
    schedule=AssetOrTimeSchedule(
        timetable=CronDataIntervalTimetable("0 3 * * 1", timezone="UTC"), assets=TRAINING_DATA
    ),
    start_date=datetime(2026, 1, 5),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    params=airflow_params(),
    render_template_as_native_obj=True,
    tags=["training", "fashion-mnist", "gpu"],
) as dag:

    @task(retries=0, execution_timeout=timedelta(minutes=5))
    def validate_params(params=None, triggering_asset_events=None) -> dict:
        """Fail fast on bad params, settings or source data: no data copied, no GPU asked for."""
        from eksml.pipeline import validate

        return validate(dict(params), triggering_asset_events)

    @task(execution_timeout=timedelta(minutes=20))
    def prepare_data(validated: dict, **context) -> dict:
        """Copy the validated IDX files into the data store under this run's data interval."""
        from eksml.pipeline import prepare, run_facts

        return prepare(validated, run_facts(context))

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def needs_cluster(validated: dict) -> bool:
        """Kubernetes training in the aws profile needs the cluster; otherwise skip to training."""
        from eksml.pipeline import needs_cluster as decide

        return decide(validated)

    @task.branch(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def choose_trainer(plan: dict) -> list[str]:
        """Kubernetes (pod or MPIJob) or SageMaker, per the ``trainer`` param."""
        from eksml.pipeline import choose_trainer_tasks

        return choose_trainer_tasks(plan)

    validated = validate_params()
    plan = prepare_data(validated)

    # Cluster: check the shared one is ACTIVE, or create an ephemeral one for this run. Every
    # Kubernetes task of the run goes to the cluster named here (empty: the settings' cluster).
    training_cluster = "{{ (ti.xcom_pull(task_ids='create_cluster') or {}).get('training_cluster') or '' }}"
    serving_cluster = "{{ (ti.xcom_pull(task_ids='create_cluster') or {}).get('inference_cluster') or '' }}"
    create_cluster = EksctlClusterOperator(
        task_id="create_cluster", action="create", cluster_mode="{{ params.cluster }}", cluster_role="training",
        pool="eks_lifecycle", execution_timeout=timedelta(hours=1),
    )
    prepare_cluster = ClusterAddonsOperator(
        task_id="prepare_cluster", cluster_mode="{{ params.cluster }}", cluster_name=training_cluster,
    )
    # Decides at once (never waits for a node only a pending training pod would bring).
    check_gpu_capacity = GpuCapacityOperator(
        task_id="check_gpu_capacity", cluster_name=training_cluster,
        nodes="{{ params.workers if params.framework != 'tensorflow' else 1 }}",
        execution_timeout=timedelta(minutes=5),
    )
    needs_cluster(validated) >> create_cluster >> prepare_cluster >> check_gpu_capacity

    branch = choose_trainer(plan)
    check_gpu_capacity >> branch

    @task
    def evaluation_specs(plan: dict) -> list[dict]:
        """One evaluation workload per candidate (mapped below)."""
        return plan["evaluations"]

    def candidate(framework: str, field: str = "") -> str:
        """Template pulling one planned candidate, or one of its fields (rendered natively)."""
        item = f"['{field}']" if field else ""
        return f"{{{{ ti.xcom_pull(task_ids='prepare_data')['candidates']['{framework}']{item} }}}}"

    train_tasks = [
        GpuTrainingPodOperator(task_id="train_tensorflow", spec=candidate("tensorflow", "spec"), pool="gpu",
                               cluster_name=training_cluster),
        MPIJobOperator(task_id="train_mxnet", spec=candidate("mxnet", "spec"), pool="gpu",
                       cluster_name=training_cluster),
        SageMakerTrainOperator(task_id="train_sagemaker_tensorflow", candidate=candidate("tensorflow"), pool="gpu",
                               max_runtime_s=3 * 3600, execution_timeout=timedelta(hours=7)),
        SageMakerTrainOperator(task_id="train_sagemaker_mxnet", candidate=candidate("mxnet"), pool="gpu",
                               max_runtime_s=3 * 3600, execution_timeout=timedelta(hours=7)),
    ]

    evaluate = WorkloadPodOperator.partial(
        task_id="evaluate", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
        execution_timeout=timedelta(minutes=30), cluster_name=serving_cluster,
    ).expand(spec=evaluation_specs(plan))

    @task(execution_timeout=timedelta(minutes=20))
    def register(plan: dict, **context) -> list[dict]:
        """Copy each finished candidate into models/<name>/<version>/ with its metadata.json."""
        from eksml.pipeline import register as register_candidates, run_facts

        return register_candidates(plan, run_facts(context))

    @task.short_circuit
    def promote(registered: list[dict], params=None) -> dict | None:
        """Evaluation gate: the best new version becomes champion only if it beats the champion."""
        from eksml.pipeline import promote_best

        return promote_best(registered, margin=float(params["min_improvement"]))

    @task(outlets=[CHAMPION_MODEL])
    def publish_champion(pointer: dict, outlet_events=None) -> dict:
        """Announce the new champion; the deployment DAG is scheduled on this asset."""
        outlet_events[CHAMPION_MODEL].extra = {"version": pointer["version"], "uri": pointer["uri"]}
        return pointer

    registered = register(plan)
    pointer = promote(registered)
    branch >> train_tasks >> evaluate >> registered
    publish_champion(pointer)

    @task.short_circuit(trigger_rule=TriggerRule.ALL_DONE)
    def needs_teardown(ti=None) -> bool:
        """An ephemeral cluster goes away after every run, failed training included."""
        from eksml.pipeline import needs_cluster_teardown

        # Pulled by hand: after a failed validation there is no XCom, and that means "nothing to delete".
        return needs_cluster_teardown(ti.xcom_pull(task_ids="validate_params"))

    # No GPU node outlives a run: runs when training and evaluation are done, whatever their state.
    # (Not as_teardown(): that needs the setup to succeed, and a create that timed out must
    # still be deleted.) The run's state still follows publish_champion, the other leaf.
    delete_cluster = EksctlClusterOperator(
        task_id="delete_cluster", action="delete", cluster_mode="{{ params.cluster }}", cluster_role="training",
        pool="eks_lifecycle", execution_timeout=timedelta(hours=1),
    )
    [validated, *train_tasks, evaluate, check_gpu_capacity] >> needs_teardown() >> delete_cluster
