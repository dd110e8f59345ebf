"""Routing with two real control planes: an ephemeral run's pod lands on its own cluster.

Two EKS clusters on a moto server point at the two control planes (endpoint and CA). The
training pod operator resolves its cluster as a run does and builds its connection from the
EKS API (``DescribeCluster``) with the project's own code. One piece is the test's: EKS
tokens are verified by AWS, which no API server here can ask, so each connection's user is
swapped for the pipeline identity's client certificate of the API server that connection
names. The certificate follows the server the project chose, so a wrong choice still lands
the pod on the wrong cluster. ``tests/integration/test_cluster_routing.py`` covers every
Kubernetes task of a run and the token's signer, against API stand-ins.
"""

from __future__ import annotations

import base64
import json

import pytest
from conftest import PIPELINE, aws_settings, pipeline_objects
from fixtures.moto_eks import create_cluster, point_cluster_at, train_group
from k8s_tasks import run_task, task_context
from kubernetes import client

from eksml.cluster import connection
from eksml.cluster.addons import addon_objects
from eksml.cluster.apply import apply_objects
from eksml.kubernetes.operators import GpuTrainingPodOperator
from eksml.settings import Settings
from eksml.specs import training_spec

pytestmark = pytest.mark.k8s

REGION = "us-west-2"
SHARED, EPHEMERAL = "shared-eks", "run-ephemeral"
NS = "ml-training"
SPEC = training_spec(
    framework="tensorflow",
    data_uri="s3://eksml-bucket/store/data/x",
    model_uri="s3://eksml-bucket/store/models/v3",
    checkpoint_uri="s3://eksml-bucket/store/ckpt/v3",
    epochs=1,
    batch_size=32,
    learning_rate=0.01,
    gpus=1,
)


@pytest.fixture(scope="module")
def planes(prepared_cluster, second_control_plane):
    settings = Settings(profile="aws")
    apply_objects(
        second_control_plane.api_client("admin"),
        [o for o in addon_objects() if o["kind"] != "Deployment"] + pipeline_objects(settings),
        log=lambda _m: None,
    )
    return {SHARED: prepared_cluster, EPHEMERAL: second_control_plane}


@pytest.fixture
def eks(planes, moto_server, monkeypatch):
    for name, plane in planes.items():
        create_cluster(name, region=REGION)
        point_cluster_at(name, plane.server, base64.b64encode(plane.pki.ca.read_bytes()).decode(), REGION)

    by_server = {plane.server: plane for plane in planes.values()}
    built_from_eks = connection.eks_kubeconfig

    def pipeline_certificate_for_the_chosen_server(*args, **kwargs):
        config = built_from_eks(*args, **kwargs)
        (cluster,) = config["clusters"]
        plane = by_server[cluster["cluster"]["server"]]
        (user,) = json.loads(plane.kubeconfig(PIPELINE).read_text())["users"]
        config["users"][0]["user"] = user["user"]
        return config

    monkeypatch.setattr(connection, "eks_kubeconfig", pipeline_certificate_for_the_chosen_server)
    return planes


def _settings() -> Settings:
    return Settings(
        profile="aws",
        store_uri="s3://eksml-bucket/store",
        cluster_name=SHARED,
        region=REGION,
        image_registry="registry.test/eksml",
        image_tag="1.0.0",
    )


def _pods(plane, task_id: str) -> list:
    core = client.CoreV1Api(plane.api_client("admin"))
    return [p for p in core.list_namespaced_pod(NS).items if p.metadata.labels.get("task_id") == task_id]


@pytest.mark.parametrize("run", ["ephemeral", "shared"])
def test_the_training_pod_lands_on_the_cluster_its_run_resolved(eks, run):
    task_id = f"train_tensorflow_{run}"
    operator = GpuTrainingPodOperator(
        task_id=task_id,
        spec=SPEC.to_dict(),
        settings=_settings(),
        cluster_name=EPHEMERAL if run == "ephemeral" else None,
        on_finish_action="keep_pod",
        deferrable=True,  # as the training DAG sets it: the watch runs in the trigger
        poll_interval=0.5,
        logging_interval=60,
    )
    run_task(operator, task_context(task_id))

    want, other = (eks[EPHEMERAL], eks[SHARED]) if run == "ephemeral" else (eks[SHARED], eks[EPHEMERAL])
    (pod,) = _pods(want, task_id)
    assert pod.status.phase == "Succeeded"  # scheduled and run on that cluster's own nodes
    assert _pods(other, task_id) == []


def test_gpu_capacity_check_reads_the_nodes_as_the_pipeline(eks, monkeypatch):
    """The run's GPU gate lists the GPU nodes (cluster-scoped) and reads the autoscaler
    Deployment in kube-system with the pipeline's own identity: the project's RBAC must allow it."""
    from eksml.cluster.operators import GpuCapacityOperator

    for key, value in {
        "EKSML_PROFILE": "aws",
        "EKSML_CLUSTER_NAME": SHARED,
        "EKSML_REGION": REGION,
        "EKSML_STORE_URI": "s3://eksml-bucket/store",
    }.items():
        monkeypatch.setenv(key, value)
    create_cluster(SHARED, train_group(desired=2, max_size=2), region=REGION)
    gate = GpuCapacityOperator(task_id="check_gpu_capacity", cluster_name=SHARED, nodes=2)
    result = gate.execute(task_context("check_gpu_capacity"))
    assert result["decision"] == "ready" and result["ready"] == 2


KARPENTER_CLUSTER = "karpenter-eks"  # no ng-train: Karpenter's NodePool brings the GPU nodes


def test_gpu_capacity_check_with_karpenter_reads_the_node_pool_not_a_node_group(eks, monkeypatch):
    """In Karpenter mode eksctl makes no GPU node group, so the run's GPU gate reads the GPU
    NodePool's limit and whether the Karpenter controller runs, with the pipeline's own identity
    (the RBAC the project renders for that mode)."""
    from eksml.cluster.operators import GpuCapacityOperator, NoGpuCapacityError

    plane = eks[SHARED]
    for key, value in {
        "EKSML_PROFILE": "aws",
        "EKSML_CLUSTER_NAME": KARPENTER_CLUSTER,
        "EKSML_REGION": REGION,
        "EKSML_STORE_URI": "s3://eksml-bucket/store",
        "EKSML_NODE_SCALER": "karpenter",
    }.items():
        monkeypatch.setenv(key, value)
    create_cluster(KARPENTER_CLUSTER, region=REGION)
    point_cluster_at(KARPENTER_CLUSTER, plane.server, base64.b64encode(plane.pki.ca.read_bytes()).decode(), REGION)
    settings = aws_settings("unused", node_scaler="karpenter", cluster_name=KARPENTER_CLUSTER)
    # What prepare_cluster applies in Karpenter mode: the CRDs, controller, NodePool and RBAC included.
    apply_objects(plane.api_client("admin"), pipeline_objects(settings), log=lambda _m: None)

    def gate(nodes: int) -> dict:
        operator = GpuCapacityOperator(task_id="check_gpu_capacity", cluster_name=KARPENTER_CLUSTER, nodes=nodes)
        return operator.execute(task_context("check_gpu_capacity"))

    # The kwok GPU nodes the control plane has (role=train) serve a run that fits on them.
    assert gate(1)["decision"] == "ready"
    # Beyond the NodePool's limit (max(4, train_nodes) nodes x 1 GPU): refused, naming the fix.
    with pytest.raises(NoGpuCapacityError, match="NodePool gpu-train of cluster karpenter-eks is limited to 4"):
        gate(5)
    # More nodes than are Ready, and no Karpenter controller available to launch them (its
    # Deployment, admitted above, scaled to zero here): refused at once.
    apps = client.AppsV1Api(plane.api_client("admin"))
    apps.patch_namespaced_deployment_scale("karpenter", "kube-system", {"spec": {"replicas": 0}})
    with pytest.raises(NoGpuCapacityError, match=r"Karpenter controller \(kube-system/karpenter\) is not available"):
        gate(4)
