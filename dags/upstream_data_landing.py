"""Examples of the two ways another pipeline starts retraining.

``upstream_data_landing`` lands a new Fashion-MNIST drop in the store
(``<store>/landing/<timestamp>/``, dated now or ``landed_at``, optionally only the first
``train_images`` training images) and emits the training-data asset event with
``extra={"uri": <landing uri>}``: the training DAG, scheduled on that asset, starts a run
that trains on the newest drop announced (older ones it supersedes are named in its note and
log). Scheduled and backfilled training runs train on the drop current at their interval's end.

``trigger_training_with_conf`` starts a training run directly with a chosen configuration
(``TriggerDagRunOperator`` with ``conf``) and waits for it, deferred in the triggerer.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Param, task

from eksml.assets import TRAINING_DATA
from eksml.dag_defaults import default_args
from eksml.params import PARAM_SCHEMAS

LANDING_DEFAULTS = default_args(
    retry_delay=timedelta(seconds=30), max_retry_delay=timedelta(minutes=10), execution_timeout=timedelta(minutes=20)
)

with DAG(
    dag_id="upstream_data_landing",
    description="Land a new Fashion-MNIST drop and announce it to the training DAG",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2026, 1, 5),
    catchup=False,
    default_args=LANDING_DEFAULTS,
    params={
        "source_uri": Param(
            None,
            type=["null", "string"],
            maxLength=1024,
            title="Source of the drop",
            description="Folder or s3:// prefix with the four IDX .gz files. Empty: the configured source.",
        ),
        "train_images": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Training images",
            description="Land only the first N training images (test images unchanged). Empty: all. "
            "Growing N over dated drops makes a series whose backfill shows how accuracy moves with data.",
        ),
        "landed_at": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Date of the drop",
            description="The drop's date (its landing prefix and what a backfill interval selects). Empty: now.",
        ),
    },
    tags=["data", "fashion-mnist", "example"],
):

    @task(multiple_outputs=False, outlets=[TRAINING_DATA])
    def land_and_announce(params=None, dag_run=None, outlet_events=None) -> dict:
        """Validate and copy the drop, then put its location in the asset event."""
        from eksml.assets import land_drop
        from eksml.settings import resolve_settings

        landed_at = params["landed_at"] and datetime.fromisoformat(params["landed_at"])
        extra = land_drop(
            resolve_settings(), landed_at or dag_run.run_after, params["source_uri"], params["train_images"]
        )
        outlet_events[TRAINING_DATA].extra = extra
        return extra

    land_and_announce()


with DAG(
    dag_id="trigger_training_with_conf",
    description="Start a quick training run with an explicit configuration and wait for it",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2026, 1, 5),
    catchup=False,
    default_args={**LANDING_DEFAULTS, "execution_timeout": timedelta(hours=3)},
    params={
        "epochs": Param(
            1,
            type="integer",
            minimum=PARAM_SCHEMAS["epochs"]["minimum"],
            maximum=PARAM_SCHEMAS["epochs"]["maximum"],
            title="Epochs",
            description="Epochs of the triggered training run.",
        )
    },
    render_template_as_native_obj=True,  # "{{ params.epochs }}" reaches the conf as an int
    tags=["training", "fashion-mnist", "example"],
):
    TriggerDagRunOperator(
        task_id="trigger_training",
        trigger_dag_id="fashion_mnist_training",
        conf={
            "framework": "tensorflow",
            "trainer": "kubernetes",
            "epochs": "{{ params.epochs }}",
            "limit_train": 2000,
            "limit_test": 500,
        },
        wait_for_completion=True,  # in the triggerer when [operators] default_deferrable is on
        poke_interval=15,
        fail_when_dag_is_paused=True,
        retries=0,  # a retry would start a second training run
    )
