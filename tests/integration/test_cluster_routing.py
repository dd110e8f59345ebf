"""Which cluster each Kubernetes task of a run reaches, and the GPU capacity decision.

Two Kubernetes API stand-ins listen on loopback (``tests/fixtures/fake_kube_api.py``: an object
store behind the API's paths, no scheduler or kubelet). Two EKS clusters on a moto server point
at them: ``shared-eks`` (the settings' cluster) and ``run-ephemeral`` (one a run created). The
tasks of the training DAG resolve their cluster the way a run does, build their connection
from the EKS API with a token signed by the Airflow AWS connection, and the test checks on
which API server their objects and requests land. The autoscaler is played by a callback that
reacts only to a pending GPU pod, as the cluster autoscaler does.

What this does not prove: nothing here is a real control plane (the project's tests on real
Kubernetes binaries do that), and the token is not verified by an API server (the test decodes
it and checks the access key it was signed with).

Kept beside the real control plane and node tiers (``tests/k8s``) for what only it can show: the
cluster reached through the EKS API (a moto server's endpoint and CA) with a bearer token signed
by the Airflow AWS connection. A real API server would need EKS's token webhook
(aws-iam-authenticator) to accept that token, which is not built or run here; the stand-in records it.
"""

from __future__ import annotations

import base64
import copy
import urllib.parse
from types import SimpleNamespace
from typing import Any

import pytest
from fixtures.fake_kube_api import FakeKubeApi, autoscaler_deployment, gpu_node
from fixtures.moto_eks import REGION, create_cluster, train_group
from fixtures.specs import small_training_spec
from project_files import load_dag

STORE = "s3://routing-bucket/eksml"
SHARED, EPHEMERAL = "shared-eks", "run-ephemeral"


def _pending_gpu_pod_autoscaler(max_nodes: int):
    """The cluster autoscaler as far as this test needs it: a pending GPU pod adds a GPU node."""

    def react(api: FakeKubeApi, plural: str, obj: dict[str, Any]) -> None:
        if plural != "pods":
            return
        wants = any(
            "nvidia.com/gpu" in ((c.get("resources") or {}).get("limits") or {}) for c in obj["spec"]["containers"]
        )
        nodes = api.items("nodes")
        if wants and len(nodes) < max_nodes:
            api.put("api/v1", None, "nodes", gpu_node(f"gpu-{len(nodes)}", gpus=4))
            obj["spec"]["nodeName"] = f"gpu-{len(nodes)}"

    return react


@pytest.fixture(scope="module")
def clusters(moto_server: str):
    apis = {SHARED: FakeKubeApi(SHARED).start(), EPHEMERAL: FakeKubeApi(EPHEMERAL).start()}
    for name, api in apis.items():
        create_cluster(name, train_group(max_size=2), server=api.url)
        api.put("apis/apps/v1", "kube-system", "deployments", autoscaler_deployment())
        api.on_create.append(_pending_gpu_pod_autoscaler(max_nodes=2))
    yield apis
    for api in apis.values():
        api.stop()


@pytest.fixture
def aws_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "EKSML_PROFILE": "aws",
        "EKSML_STORE_URI": STORE,
        "EKSML_CLUSTER_NAME": SHARED,
        "EKSML_REGION": REGION,
        "EKSML_IMAGE_REGISTRY": "123456789012.dkr.ecr.us-west-2.amazonaws.com/eksml",
        "EKSML_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/eksml-sagemaker-role",
    }.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="module")
def dag():
    return load_dag("fashion_mnist_training")


def _access_key_of(token: str) -> str:
    """The access key id a ``k8s-aws-v1.`` token (a presigned STS URL) was signed with."""
    assert token.startswith("k8s-aws-v1."), token
    raw = token[len("k8s-aws-v1.") :]
    url = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"][0]
    return query["X-Amz-Credential"][0].split("/")[0]


def _gpu_gate(dag):
    """The task between cluster preparation and training: the run's GPU decision."""
    (gate,) = [t for t in dag.get_task("prepare_cluster").downstream_list]
    return gate


def _context(run_id: str = "scheduled__2026-11-29T03:00:00+00:00", task_id: str = "t") -> dict:
    ti = SimpleNamespace(
        dag_id="fashion_mnist_training",
        task_id=task_id,
        run_id=run_id,
        try_number=1,
        map_index=-1,
        start_date=None,
        xcom_push=lambda **kw: None,
    )
    return {
        "ti": ti,
        "task_instance": ti,
        "run_id": run_id,
        "dag": SimpleNamespace(dag_id="fashion_mnist_training"),
        "params": {"workers": 2, "framework": "tensorflow"},
    }


# --- GPU capacity -----------------------------------------------------------------------------
def test_gpu_gate_does_not_wait_for_a_node_only_a_pending_pod_would_bring(clusters, aws_settings, dag) -> None:
    """Node group at size 0, autoscaler reacting only to pending pods: the gate must not deadlock,
    and the training pod submitted after it gets its node."""
    api = clusters[SHARED]
    gate = copy.copy(_gpu_gate(dag))
    gate.cluster_name = SHARED
    if hasattr(gate, "poke_interval"):  # a sensor: give it a bounded budget for this test
        gate.timeout, gate.poke_interval, gate.mode = 3, 0.5, "poke"
    if hasattr(gate, "nodes"):
        gate.nodes = 1
    assert api.items("nodes") == []
    result = gate.execute(_context())
    assert result["decision"] == "scale-up-on-pending-pod" and result["max_size"] == 2
    assert api.items("nodes") == []  # nothing pending yet, so nothing scaled

    train = copy.copy(dag.get_task("train_tensorflow"))
    train.spec, train.cluster_name = small_training_spec(STORE), SHARED
    pod = train.build_pod_request_obj(_context())
    train.hook.core_v1_client.create_namespaced_pod(pod.metadata.namespace, pod)
    (node,) = api.items("nodes")
    (created,) = api.items("pods")
    assert created["spec"]["nodeName"] == node["metadata"]["name"]


def test_no_gpu_capacity_names_group_max_size_and_quota(clusters, aws_settings) -> None:
    from eksml.cluster.operators import GpuCapacityOperator, NoGpuCapacityError

    gate = GpuCapacityOperator(task_id="gate", cluster_name=EPHEMERAL, nodes=3)
    with pytest.raises(NoGpuCapacityError) as err:
        gate.execute(_context())
    message = str(err.value)
    assert "needs 3 GPU node(s)" in message and "ng-train" in message and "max 2" in message
    assert "L-DB2E81BA" in message and "Running On-Demand G and VT instances" in message


def test_without_an_autoscaler_nothing_would_add_the_nodes(clusters, aws_settings) -> None:
    from eksml.cluster.operators import GpuCapacityOperator, NoGpuCapacityError

    api = clusters[EPHEMERAL]
    saved = api.objects[("apis/apps/v1", "kube-system", "deployments")].pop("cluster-autoscaler")
    try:
        with pytest.raises(NoGpuCapacityError, match="no cluster autoscaler is running"):
            GpuCapacityOperator(task_id="gate", cluster_name=EPHEMERAL, nodes=1).execute(_context())
    finally:
        api.put("apis/apps/v1", "kube-system", "deployments", saved)


@pytest.mark.parametrize("dedicated", [False, True])
def test_gpu_gate_without_a_cluster_name_checks_the_cluster_that_trains_in_the_settings_layout(
    clusters, aws_settings, dag, monkeypatch, dedicated
) -> None:
    """A run on the settings' cluster (``create_cluster`` returned no name) checks the cluster
    that trains in the settings' layout: the shared one, or ``<name>-training`` when training has
    a cluster of its own. Before, an empty ``cluster_name`` always meant ``<name>-training``."""
    training = f"{SHARED}-training" if dedicated else SHARED
    if dedicated:  # the dedicated training cluster, served by the second API stand-in
        create_cluster(training, train_group(max_size=2), server=clusters[EPHEMERAL].url)
    monkeypatch.setenv("EKSML_DEDICATED_TRAINING_CLUSTER", "true" if dedicated else "false")
    gate = _render(dag.get_task("check_gpu_capacity"), _context(), None)
    assert gate.cluster_name == ""
    gate.nodes = 1
    assert gate.execute(_context())["cluster"] == training


def test_cluster_tasks_use_the_aws_connection_the_settings_name(clusters, aws_settings, monkeypatch) -> None:
    """EKSML_AWS_CONN_ID names the connection for the EKS API and the token. Before, the cluster
    operators defaulted to ``aws_default`` whatever the settings said."""
    import json
    import os

    from eksml.cluster.operators import GpuCapacityOperator

    conn = json.loads(os.environ["AIRFLOW_CONN_AWS_DEFAULT"])
    monkeypatch.setenv(
        "AIRFLOW_CONN_EKSML_TEAM", json.dumps({**conn, "login": "TEAMKEYFROMSETTINGS", "password": "team-secret"})
    )
    monkeypatch.setenv("EKSML_AWS_CONN_ID", "eksml_team")
    api = clusters[SHARED]
    api.requests.clear()
    result = GpuCapacityOperator(task_id="gate", cluster_name=SHARED, nodes=1).execute(_context())
    assert result["cluster"] == SHARED
    assert api.requests and {_access_key_of(r.token) for r in api.requests} == {"TEAMKEYFROMSETTINGS"}


# --- routing ------------------------------------------------------------------------------------
def _render(task, context: dict, xcom: dict | None) -> Any:
    """The task with its templates rendered for a run whose create_cluster returned ``xcom``."""
    import jinja2

    task = copy.copy(task)
    ti = SimpleNamespace(xcom_pull=lambda task_ids=None, **kw: xcom if task_ids == "create_cluster" else None)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    name = getattr(task, "cluster_name", None)
    if isinstance(name, str) and "{{" in name:
        task.cluster_name = env.from_string(name).render(ti=ti)
    return task


@pytest.mark.parametrize("mode", ["ephemeral", "shared"])
def test_every_kubernetes_task_reaches_the_cluster_its_run_resolved(clusters, aws_settings, dag, mode) -> None:
    from eksml.serving.operators import DeployModelOperator  # noqa: F401 - the deployment's operator

    xcom = (
        {"training_cluster": EPHEMERAL, "inference_cluster": EPHEMERAL}
        if mode == "ephemeral"
        else {"training_cluster": SHARED, "inference_cluster": SHARED}
    )
    want = clusters[EPHEMERAL if mode == "ephemeral" else SHARED]
    other = clusters[SHARED if mode == "ephemeral" else EPHEMERAL]
    for api in clusters.values():
        api.requests.clear()
        for key in [k for k in api.objects if k[2] in ("pods", "mpijobs")]:
            api.objects[key].clear()

    context = _context(run_id=f"manual__{mode}")
    # training pod and evaluation pod: created through the operator's own hook
    from eksml.kubernetes.operators import WorkloadPodOperator

    mapped = dag.get_task("evaluate")  # mapped per candidate: one instance, as expanded
    evaluation = WorkloadPodOperator(
        task_id="evaluate", spec=_evaluation_spec(), cluster_name=mapped.partial_kwargs["cluster_name"]
    )
    for task in (dag.get_task("train_tensorflow"), evaluation):
        task = _render(task, context, xcom)
        if task.task_id == "train_tensorflow":
            task.spec = small_training_spec(STORE)
        pod = task.build_pod_request_obj(context)
        task.hook.core_v1_client.create_namespaced_pod(pod.metadata.namespace, pod)
    # MPIJob: created by the operator's execute, which then defers to a trigger for the same cluster
    from airflow.sdk.exceptions import TaskDeferred

    mpi = _render(dag.get_task("train_mxnet"), context, xcom)
    mpi.spec = _mpi_spec()
    with pytest.raises(TaskDeferred) as deferred:
        mpi.execute(_context(run_id=f"manual__{mode}", task_id="train_mxnet"))
    assert deferred.value.trigger.eks_target["cluster_name"] == want.name
    # GPU gate, and the trigger's own connection (built as the triggerer builds it)
    gate = _render(dag.get_task("check_gpu_capacity"), context, xcom)
    gate.nodes = 1
    gate.execute(context)
    add_ons = _render(dag.get_task("prepare_cluster"), context, xcom)
    add_ons_target = add_ons._target(*add_ons._settings_and_request())
    add_ons_target.hook().core_v1_client.list_namespace()
    # the deployment DAG's Kubernetes target in the same resolution
    from eksml.cluster.node_contract import INFERENCE_CLUSTER
    from eksml.cluster.target import resolve_target
    from eksml.settings import load_settings

    deploy_target = resolve_target(
        load_settings(), cluster_role=INFERENCE_CLUSTER, cluster_name=xcom["inference_cluster"]
    )
    deploy_target.hook().core_v1_client.list_namespace()

    assert {p["metadata"]["name"].rsplit("-", 1)[0] for p in want.items("pods")} >= {
        "train-tensorflow",
        "evaluate-tensorflow",
    }
    assert len(want.items("mpijobs")) == 1
    assert other.items("pods") == [] and other.items("mpijobs") == [] and other.requests == []
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    key = AwsBaseHook(aws_conn_id="aws_default", client_type="sts").get_credentials().access_key
    assert want.requests and all(r.token and _access_key_of(r.token) == key for r in want.requests)


def _evaluation_spec() -> dict:
    from eksml.runs import evaluation_spec

    cand = {"framework": "tensorflow", "staging_uri": f"{STORE}/staging/fashion-mnist/v1"}
    return evaluation_spec(cand, f"{STORE}/data/fashion-mnist/i", None, None).to_dict()


def _mpi_spec() -> dict:
    return small_training_spec(STORE, "mxnet", version="v2", gpus=1, workers=2)


def test_a_gpu_pod_that_never_schedules_fails_naming_group_sizes_and_quota(clusters, aws_settings, dag) -> None:
    """The group may scale but the autoscaler cannot launch a node (EC2 quota or capacity): the
    training pod's bounded startup ends in an error that says where the GPU should have come from."""
    from airflow.sdk.exceptions import AirflowFailException

    api = clusters[EPHEMERAL]
    saved = list(api.on_create)

    def never_scales(fake: FakeKubeApi, plural: str, obj: dict[str, Any]) -> None:
        if plural == "pods":
            obj["status"] = {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
                    }
                ],
            }

    api.on_create[:] = [never_scales]
    try:
        train = copy.copy(dag.get_task("train_tensorflow"))
        train.spec, train.cluster_name = small_training_spec(STORE), EPHEMERAL
        pod = train.build_pod_request_obj(_context())
        train.pod = train.hook.core_v1_client.create_namespaced_pod(pod.metadata.namespace, pod)
        with pytest.raises(AirflowFailException) as err:
            train.explain_unscheduled(TimeoutError("Pod took too long to start running"))
    finally:
        api.on_create[:] = saved
    message = str(err.value)
    assert message.startswith("no GPU capacity") and "Insufficient nvidia.com/gpu" in message
    assert f"ng-train of cluster {EPHEMERAL} (min 0, desired 0, max 2)" in message
    assert "L-DB2E81BA" in message
