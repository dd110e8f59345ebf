"""Fashion-MNIST retraining: validate -> prepare data -> train (Kubernetes or SageMaker)
-> evaluate against the champion -> register -> promote -> publish the champion asset.

**Schedule.** Weekly (Mondays 03:00 UTC) or whenever the training-data asset is updated.
Every DAG starts paused. **Unpausing** (also the trigger form's "Unpause on trigger") makes the
scheduler create the latest week's *scheduled* run at once (catchup is off: only that one).
That run trains only when the setting `scheduled_training` is on (`EKSML_SCHEDULED_TRAINING=true`
or the `eksml_settings` Variable); otherwise it is skipped within seconds, its note says why,
and your manual run starts right after it. Manual, asset-triggered and backfill runs always train.

**Reading the grid.** The `outcome` task (outside the groups, so visible without expanding
one) is green when the run promoted a new champion, skipped when the gate refused it and
upstream-failed when the run failed; the run's note carries the version and test accuracy
(or the failed task and the reason), and
the task's extra links open the model version, its metrics and its plots in the store.
Task groups: `cluster` (aws profile, Kubernetes trainer only), `training`, `evaluation`,
`registry`, `teardown` (an ephemeral cluster is deleted whatever became of training).

All logic lives in the ``eksml`` package under plugins/; this file only wires tasks.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, AssetOrTimeSchedule, CronDataIntervalTimetable, TaskGroup, TriggerRule, task

from eksml.assets import CHAMPION_MODEL, TRAINING_DATA
from eksml.cluster.lifecycle import EksctlClusterOperator
from eksml.cluster.operators import ClusterAddonsOperator, GpuCapacityOperator
from eksml.dag_defaults import default_args
from eksml.kubernetes.operators import GpuTrainingPodOperator, MPIJobOperator, WorkloadPodOperator
from eksml.outcome import RunOutcomeOperator
from eksml.params import airflow_params
from eksml.sagemaker.operators import SageMakerTrainOperator

#: Task docs (the UI's "Task Documentation"): why a profile skips a task, what runs where.
CLUSTER_ONLY = (
    "Runs only for `trainer=kubernetes` in the **aws** profile. **Skipped in the local profile** "
    "(no cluster: workloads run as processes), in the **kubernetes** profile (the cluster is the user's, "
    "reached through its connection) and for `trainer=sagemaker` (SageMaker brings its own instances)."
)
KUBERNETES_TRAINING = (
    "aws profile: a GPU pod (TensorFlow) or a Kubeflow MPIJob (MXNet + Horovod) on EKS. "
    "**local profile: the same entrypoint runs as a process** in `.venvs/<image>` (`horovodrun` over Gloo "
    "for MXNet). Skipped when `trainer=sagemaker` or when the framework is not in this run."
)
SAGEMAKER_TRAINING = (
    "A SageMaker training job (script mode). In the local profile the same `train.py` runs as a process "
    "under SageMaker's on-disk contract. **Skipped unless `trainer=sagemaker`** and the framework is in this run."
)
EVALUATION = (
    "One per candidate: scores the candidate and the serving champion on the same test images and writes "
    "`evaluation.json` and the plots. aws profile: a pod; local profile: a process in `.venvs/inference`."
)
OUTCOME = (
    "What the run achieved. **Green**: a new champion; **skipped**: the gate refused it. The log, the run "
    "note and the extra links (model version, metrics, plots) carry the version and test accuracy."
)
TEARDOWN = (
    "Deletes the cluster only for `cluster=ephemeral` with the Kubernetes trainer in the aws profile, "
    "whatever became of training; **skipped otherwise** (local profile, existing cluster, SageMaker)."
)

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

    @task(multiple_outputs=False, retries=0, execution_timeout=timedelta(minutes=5), inlets=[TRAINING_DATA])
    def validate_params(
        params=None, triggering_asset_events=None, dag_run=None, inlet_events=None, asset_state_store=None
    ) -> dict:
        """Fail fast on bad params, settings or source data: no data copied, no GPU asked for.

        Skips the whole run when it is a scheduled run and `scheduled_training` is off. An
        asset-triggered run trains on the newest drop announced and names every older one."""
        from eksml.drops import account_from_context
        from eksml.pipeline import validate

        drops = account_from_context(triggering_asset_events, inlet_events, asset_state_store)
        return validate(dict(params), triggering_asset_events, dag_run, drops)

    @task(multiple_outputs=False, execution_timeout=timedelta(minutes=20))
    def prepare_data(validated: dict, **context) -> dict:
        """Copy the validated IDX files into the data store under this run's data interval."""
        from eksml.pipeline import prepare, run_facts

        return prepare(validated, run_facts(context))

    @task.short_circuit(ignore_downstream_trigger_rules=False, doc_md=CLUSTER_ONLY)
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
    with TaskGroup("cluster", prefix_group_id=False, tooltip="EKS cluster (aws profile, Kubernetes trainer)"):
        create_cluster = EksctlClusterOperator(
            task_id="create_cluster",
            action="create",
            cluster_mode="{{ params.cluster }}",
            cluster_role="training",
            pool="eks_lifecycle",
            execution_timeout=timedelta(hours=1),
            doc_md=CLUSTER_ONLY,
        )
        prepare_cluster = ClusterAddonsOperator(
            task_id="prepare_cluster",
            cluster_mode="{{ params.cluster }}",
            cluster_name=training_cluster,
            doc_md=CLUSTER_ONLY,
        )
        # Decides at once (never waits for a node only a pending training pod would bring).
        check_gpu_capacity = GpuCapacityOperator(
            task_id="check_gpu_capacity",
            cluster_name=training_cluster,
            nodes="{{ params.workers if params.framework != 'tensorflow' else 1 }}",
            execution_timeout=timedelta(minutes=5),
            doc_md=CLUSTER_ONLY,
        )
        needs_cluster(validated) >> create_cluster >> prepare_cluster >> check_gpu_capacity

    def planned_spec(framework: str) -> str:
        """Template pulling one planned candidate's workload spec (rendered natively)."""
        return f"{{{{ ti.xcom_pull(task_ids='prepare_data')['candidates']['{framework}']['spec'] }}}}"

    with TaskGroup("training", prefix_group_id=False, tooltip="One branch per trainer and framework"):
        branch = choose_trainer(plan)
        train_tasks = [
            GpuTrainingPodOperator(
                task_id="train_tensorflow",
                deferrable=True,  # hours of training: wait in the triggerer, not in a worker slot
                spec=planned_spec("tensorflow"),
                pool="gpu",
                cluster_name=training_cluster,
                doc_md=KUBERNETES_TRAINING,
            ),
            MPIJobOperator(
                task_id="train_mxnet",
                deferrable=True,  # hours of training: wait in the triggerer, not in a worker slot
                spec=planned_spec("mxnet"),
                pool="gpu",
                cluster_name=training_cluster,
                doc_md=KUBERNETES_TRAINING,
            ),
            SageMakerTrainOperator(
                task_id="train_sagemaker_tensorflow",
                spec=planned_spec("tensorflow"),
                pool="gpu",
                max_runtime_s=3 * 3600,
                execution_timeout=timedelta(hours=7),
                doc_md=SAGEMAKER_TRAINING,
            ),
            SageMakerTrainOperator(
                task_id="train_sagemaker_mxnet",
                spec=planned_spec("mxnet"),
                pool="gpu",
                max_runtime_s=3 * 3600,
                execution_timeout=timedelta(hours=7),
                doc_md=SAGEMAKER_TRAINING,
            ),
        ]
        branch >> train_tasks
    check_gpu_capacity >> branch

    @task
    def evaluation_specs(plan: dict) -> list[dict]:
        """One evaluation workload per candidate (mapped below)."""
        return plan["evaluations"]

    with TaskGroup("evaluation", prefix_group_id=False, tooltip="Candidate and champion on the same test images"):
        evaluate = WorkloadPodOperator.partial(
            task_id="evaluate",
            trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
            execution_timeout=timedelta(minutes=30),
            cluster_name=serving_cluster,
            doc_md=EVALUATION,
        ).expand(spec=evaluation_specs(plan))

    @task(execution_timeout=timedelta(minutes=20))
    def register(plan: dict, **context) -> list[dict]:
        """Copy each finished candidate into models/<name>/<version>/ with its metadata.json."""
        from eksml.pipeline import register as register_candidates
        from eksml.pipeline import run_facts

        return register_candidates(plan, run_facts(context))

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def promote(registered: list[dict], params=None) -> dict | None:
        """Evaluation gate: the best new version becomes champion only if it beats the champion."""
        from eksml.pipeline import promote_best

        return promote_best(registered, margin=float(params["min_improvement"]))

    @task(multiple_outputs=False, outlets=[CHAMPION_MODEL])
    def publish_champion(pointer: dict, outlet_events=None) -> dict:
        """Announce the new champion (version, accuracy); the deployment DAG is scheduled on it."""
        from eksml.pipeline import champion_event_extra

        outlet_events[CHAMPION_MODEL].extra = champion_event_extra(pointer)
        return pointer

    with TaskGroup("registry", prefix_group_id=False, tooltip="Register every candidate, promote the best"):
        registered = register(plan)
        pointer = promote(registered)
        published = publish_champion(pointer)
    # Outside the groups, so the grid shows each run's result without expanding one. Green: a new
    # champion; skipped: the gate refused (the note and log say why); upstream_failed: the run
    # failed (its note names the task and the reason). none_failed: runs after a refusal
    # (publish skipped), never after a failure.
    outcome = RunOutcomeOperator(
        task_id="outcome",
        inlets=[TRAINING_DATA],  # marks the drops this run accounted for in the asset's state store
        trigger_rule=TriggerRule.NONE_FAILED,
        doc_md=OUTCOME,
        execution_timeout=timedelta(minutes=5),
    )
    published >> outcome
    train_tasks >> evaluate >> registered

    @task.short_circuit(trigger_rule=TriggerRule.ALL_DONE, doc_md=TEARDOWN)
    def needs_teardown(ti=None) -> bool:
        """An ephemeral cluster goes away after every run, failed training included."""
        from eksml.pipeline import needs_cluster_teardown

        # Pulled by hand: after a failed validation there is no XCom, and that means "nothing to delete".
        return needs_cluster_teardown(ti.xcom_pull(task_ids="validate_params"))

    # No GPU node outlives a run: runs when training and evaluation are done, whatever their state.
    # (Not as_teardown(): that needs the setup to succeed, and a create that timed out must
    # still be deleted.) The run's state still follows outcome, the other leaf.
    with TaskGroup("teardown", prefix_group_id=False, tooltip="Delete an ephemeral cluster, whatever happened"):
        teardown = needs_teardown()
        delete_cluster = EksctlClusterOperator(
            task_id="delete_cluster",
            action="delete",
            cluster_mode="{{ params.cluster }}",
            cluster_role="training",
            pool="eks_lifecycle",
            execution_timeout=timedelta(hours=1),
            doc_md=TEARDOWN,
        )
        teardown >> delete_cluster
    [validated, *train_tasks, evaluate, check_gpu_capacity] >> teardown
