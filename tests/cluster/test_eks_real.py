"""Create, use and delete a small real EKS cluster with the project's operators.

Runs only where eksctl, AWS credentials and an S3 store are present AND
``EKSML_CLUSTER_TEST=1`` is set (it bills for ~30 minutes of an EKS control plane, one
g4dn.xlarge and one t3.large). Everything else skips it with the reason.

    EKSML_CLUSTER_TEST=1 EKSML_STORE_URI=s3://BUCKET/eksml-it AWS_PROFILE=... \
        .venv/bin/python -m pytest tests/cluster/test_eks_real.py -m cluster -s
"""

from __future__ import annotations

import os
import shutil
import time
import uuid

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _skip_reason() -> str | None:
    if os.environ.get("EKSML_CLUSTER_TEST") != "1":
        return "set EKSML_CLUSTER_TEST=1 to create a real (billed) EKS cluster"
    if not shutil.which(os.environ.get("EKSML_EKSCTL", "eksctl")):
        return "eksctl is not installed"
    if not os.environ.get("EKSML_STORE_URI", "").startswith("s3://"):
        return "EKSML_STORE_URI=s3://BUCKET/PREFIX is needed for the IRSA policies"
    import boto3

    if boto3.Session().get_credentials() is None:
        return "no AWS credentials"
    return None


REASON = _skip_reason()
if REASON:
    pytest.skip(REASON, allow_module_level=True)

NAME = f"eksml-it-{uuid.uuid4().hex[:6]}"
REGION = os.environ.get("EKSML_REGION", "us-west-2")
SMALL = {
    "name": NAME,
    "region": REGION,
    "train_instance_types": "g4dn.xlarge",
    "train_nodes": 1,
    "inference_instance_type": "t3.large",
    "inference_nodes": 1,
}


def _op(action: str, **overrides):
    from eksml.cluster.lifecycle import EksctlClusterOperator

    return EksctlClusterOperator(
        task_id=action, action=action, cluster={**SMALL, **overrides}, aws_conn_id=None, deferrable=False
    )


def _gpu_pod(hook) -> str:
    """A pod that needs one GPU on a train node; returns its log."""
    from kubernetes import client

    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="nvidia-smi", namespace="ml-training"),
        spec=client.V1PodSpec(
            restart_policy="Never",
            service_account_name="training",
            node_selector={"role": "train"},
            tolerations=[client.V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
            containers=[
                client.V1Container(
                    name="smi",
                    image="nvidia/cuda:12.4.1-base-ubuntu22.04",
                    command=["nvidia-smi", "-L"],
                    resources=client.V1ResourceRequirements(limits={"nvidia.com/gpu": "1"}),
                )
            ],
        ),
    )
    core = hook.core_v1_client
    core.create_namespaced_pod("ml-training", pod)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        phase = core.read_namespaced_pod("nvidia-smi", "ml-training").status.phase
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(10)
    log = core.read_namespaced_pod_log("nvidia-smi", "ml-training")
    core.delete_namespaced_pod("nvidia-smi", "ml-training")
    return log


def test_create_use_scale_delete():
    from eksml.cluster.connection import eks_kubernetes_hook
    from eksml.cluster.operators import ClusterAddonsOperator, GpuCapacityOperator

    context = {"run_id": "cluster-test"}
    try:
        first = _op("create").execute(context)
        assert first["clusters"][0]["created"] is True
        again = _op("create").execute(context)  # idempotent: reused, not recreated
        assert again["clusters"][0]["created"] is False

        ClusterAddonsOperator(task_id="addons", cluster=SMALL, aws_conn_id=None).execute(context)
        capacity = GpuCapacityOperator(task_id="gpus", cluster=SMALL, cluster_name=NAME, aws_conn_id=None)
        assert capacity.execute(context)["decision"] in ("ready", "scale-up-on-pending-pod")

        log = _gpu_pod(eks_kubernetes_hook(NAME, REGION, aws_conn_id=None))
        assert "GPU 0:" in log

        scaled = _op("scale", train_nodes=0).execute(context)
        assert scaled["clusters"][0]["nodegroups"]["ng-train"]["desired"] == 0
    finally:
        result = _op("delete").execute(context)
        assert result["deleted"] == [NAME]
