"""Cluster lifecycle on Amazon EKS with eksctl: create (or reuse and scale), scale, or delete.

``create`` is idempotent: an existing cluster with the same name is reused, missing node
groups are added and sizes are applied, never recreated. After create or scale the cluster
is prepared (NVIDIA device plugin, MPI operator, cluster autoscaler, namespaces, IRSA
service accounts, least-privilege RBAC) and the run waits until GPU nodes advertise
``nvidia.com/gpu``. Long eksctl commands run deferred in the triggerer: no worker slot is held.

Needs the aws profile: in the local profile its first task fails with the reason, before
eksctl is called (training there runs as local processes and needs no cluster).

The cluster name, region and topology are the settings' (`EKSML_CLUSTER_NAME`, `EKSML_REGION`,
`EKSML_DEDICATED_TRAINING_CLUSTER` or the `eksml_settings` Variable), the same cluster the
training DAG uses; a value typed into the trigger form overrides them for that run only.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task

from eksml.cluster.lifecycle import EksctlClusterOperator
from eksml.cluster.operators import ClusterAddonsOperator, GpuCapacityOperator
from eksml.cluster.request import (
    DEFAULT_GPU_INSTANCE_TYPE,
    DEFAULT_INFERENCE_NODES,
    DEFAULT_TRAIN_MAX_NODES,
    DEFAULT_TRAIN_NODES,
    trains_on_dedicated_cluster,
)
from eksml.dag_defaults import default_args

#: eksctl request overrides, rendered from the run's params (text values are coerced; an empty
#: one, from a param left null, keeps the settings' value).
CLUSTER = {
    "name": "{{ params.cluster_name or '' }}",
    "region": "{{ params.region or '' }}",
    "train_instance_types": "{{ params.train_instance_types | join(',') }}",
    "spot": "{{ params.spot }}",
    "train_nodes": "{{ params.train_nodes }}",
    "train_max_nodes": "{{ params.train_max_nodes }}",
    "inference_nodes": "{{ params.inference_nodes }}",
    "dedicated_training_cluster": (
        "{{ '' if params.dedicated_training_cluster is none else params.dedicated_training_cluster }}"
    ),
}
#: The largest node group the form lets one ask for.
MAX_GROUP_NODES = 100
#: The cluster that trains: the dedicated one, or the shared one (``trains_on_dedicated_cluster``: the
#: param, else the settings).
TRAINING_ROLE = "{{ 'training' if trains_on_dedicated_cluster(params.dedicated_training_cluster) else 'all' }}"

with DAG(
    dag_id="eks_cluster",
    description="Create, scale or delete the EKS cluster(s) with eksctl",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    max_active_runs=1,
    catchup=False,
    default_args=default_args(
        retries=1, retry_delay=timedelta(minutes=2), execution_timeout=timedelta(hours=1), pool="eks_lifecycle"
    ),
    tags=["cluster", "eks", "eksctl"],
    user_defined_macros={"trains_on_dedicated_cluster": trains_on_dedicated_cluster},
    params={
        "action": Param(
            "create",
            type="string",
            enum=["create", "scale", "delete"],
            title="Action",
            description="create also reuses an existing cluster and scales it; delete waits until it is gone",
        ),
        "cluster_name": Param(
            None,
            type=["null", "string"],
            pattern=r"^[0-9A-Za-z][A-Za-z0-9\-_]*$",
            maxLength=100,
            title="Cluster name",
            description="EKS cluster name (eksctl rules); empty: the settings' cluster_name",
        ),
        "region": Param(
            None,
            type=["null", "string"],
            pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$",
            title="AWS region",
            description="Region of the cluster; empty: the settings' region",
        ),
        "train_instance_types": Param(
            [DEFAULT_GPU_INSTANCE_TYPE],
            type="array",
            items={"type": "string"},
            minItems=1,
            title="GPU instance types",
            description="Instance types of ng-train (several for spot)",
        ),
        "spot": Param(False, type="boolean", title="Spot GPU nodes", description="Use spot capacity for ng-train"),
        "train_nodes": Param(
            DEFAULT_TRAIN_NODES,
            type="integer",
            minimum=0,
            maximum=MAX_GROUP_NODES,
            title="GPU nodes",
            description="Desired size of ng-train (0 lets it scale from zero)",
        ),
        "train_max_nodes": Param(
            DEFAULT_TRAIN_MAX_NODES,
            type="integer",
            minimum=1,
            maximum=MAX_GROUP_NODES,
            title="GPU nodes (max)",
            description="Upper bound of ng-train for the cluster autoscaler",
        ),
        "inference_nodes": Param(
            DEFAULT_INFERENCE_NODES,
            type="integer",
            minimum=1,
            maximum=MAX_GROUP_NODES,
            title="Inference nodes",
            description="Desired size of ng-inference",
        ),
        "dedicated_training_cluster": Param(
            None,
            type=["null", "boolean"],
            title="Dedicated training cluster",
            description="Separate clusters for training and inference; empty: the settings' dedicated_training_cluster",
        ),
    },
) as dag:

    @task.branch(execution_timeout=timedelta(minutes=1), retries=0)
    def choose(params=None) -> list[str]:
        """delete goes straight to the delete task; create and scale are checked, applied, prepared.

        Fails at once in the local profile: there is no cluster to manage there."""
        from eksml.settings import resolve_settings

        resolve_settings().require_aws("the eks_cluster DAG")
        return ["delete_cluster"] if params["action"] == "delete" else ["preflight"]

    @task(execution_timeout=timedelta(minutes=2), retries=0)
    def preflight(cluster: dict) -> list[str]:
        """Quotas and version, before eksctl creates anything (a node group over quota fails only
        after the control plane was built)."""
        from eksml.preflight import run_cluster_preflight

        return run_cluster_preflight(cluster)

    apply_cluster = EksctlClusterOperator(task_id="apply_cluster", action="{{ params.action }}", cluster=CLUSTER)
    delete_cluster = EksctlClusterOperator(task_id="delete_cluster", action="delete", cluster=CLUSTER)
    prepare_training = ClusterAddonsOperator(task_id="prepare_training", cluster=CLUSTER, cluster_role=TRAINING_ROLE)
    prepare_inference = ClusterAddonsOperator(
        task_id="prepare_inference",
        cluster=CLUSTER,
        cluster_role="inference",
        install_upstream=False,
    )

    @task.short_circuit(execution_timeout=timedelta(minutes=1))
    def dedicated(params=None) -> bool:
        """Only the dedicated topology has a second (inference) cluster to prepare."""
        return trains_on_dedicated_cluster(params["dedicated_training_cluster"])

    check_gpu_capacity = GpuCapacityOperator(task_id="check_gpu_capacity", cluster=CLUSTER, cluster_role=TRAINING_ROLE)

    checked = preflight(CLUSTER)
    choose() >> [checked, delete_cluster]
    checked >> apply_cluster
    apply_cluster >> prepare_training >> check_gpu_capacity
    apply_cluster >> dedicated() >> prepare_inference
