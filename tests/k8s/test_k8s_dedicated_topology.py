"""The dedicated-training-cluster topology on two real control planes (issue 22, fault 4).

Training runs on ``<name>-training``; evaluation pods (node role ``inference``) go to the
serving cluster ``<name>``, in the training namespace under the training service account
(``WorkloadPodOperator``). Each cluster here is prepared with exactly the objects the add-ons
step renders for its role, then the evaluation task runs on the serving cluster as the
pipeline identity. The API server decides: a pod naming a namespace or service account that
does not exist is refused (ServiceAccount admission), and RBAC allows only what a RoleBinding
grants. kwok stands in for the nodes (see k8s_controlplane): no container runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ACCOUNT_ID, PIPELINE, _connection, _start, aws_settings
from k8s_controlplane import ControlPlane, remove_workdir
from k8s_tasks import run_task, task_context
from kubernetes import client

from eksml.cluster.apply import apply_objects
from eksml.cluster.objects import IRSA_ANNOTATION, PIPELINE_ROLE, render_kubernetes_objects
from eksml.cluster.request import ClusterRequest, build_cluster_configs
from eksml.kubernetes.operators import WorkloadPodOperator
from eksml.runs import evaluation_spec

pytestmark = pytest.mark.k8s

NS, SA = "ml-training", "training"


@pytest.fixture(scope="module")
def layout(k8s_bin_dir: Path) -> Iterator[dict[str, ControlPlane]]:
    """Two fresh clusters, each prepared (as cluster admin) with its role's objects only."""
    planes = {"training": _start("dedicated-training", k8s_bin_dir), "inference": _start("serving", k8s_bin_dir)}
    settings = aws_settings("unused", dedicated_training_cluster=True)
    try:
        for role, plane in planes.items():
            objects = render_kubernetes_objects(settings, cluster_role=role, account_id=ACCOUNT_ID)
            apply_objects(plane.api_client("admin"), objects, log=lambda _m: None)
        yield planes
    finally:
        for plane in planes.values():
            plane.stop()
            remove_workdir(plane.workdir)


@pytest.fixture(scope="module")
def serving_conn(layout: dict[str, ControlPlane]) -> Iterator[str]:
    yield from _connection("kubernetes_serving", layout["inference"].kubeconfig(PIPELINE))


def test_evaluation_runs_on_the_serving_cluster_with_its_namespace_account_and_rbac(layout, serving_conn):
    serving = layout["inference"]
    core = client.CoreV1Api(serving.api_client("admin"))
    core.read_namespace(NS)  # the namespace, the service account and its IRSA role are there
    account = core.read_namespaced_service_account(SA, NS)
    role_arn = account.metadata.annotations[IRSA_ANNOTATION]
    settings = aws_settings(serving_conn, dedicated_training_cluster=True)
    _, serving_config = build_cluster_configs(ClusterRequest.from_settings(settings))
    irsa = {(a.namespace, a.name): a.role_name for a in serving_config.service_accounts}
    assert role_arn.endswith(f":role/{irsa[(NS, SA)]}")  # eksctl creates that role on this cluster

    spec = evaluation_spec(
        {"framework": "tensorflow", "staging_uri": "s3://eksml-bucket/store/staging/run/tensorflow"},
        "s3://eksml-bucket/store/data/x",
        None,
        100,
    )
    user = serving.identities[PIPELINE].user
    before = len(serving.audit_events(user))
    operator = WorkloadPodOperator(
        task_id="evaluate",
        spec=spec.to_dict(),
        settings=settings,
        deferrable=True,
        poll_interval=0.5,
        on_finish_action="keep_pod",
        logging_interval=60,
    )
    run_task(operator, task_context("evaluate"))

    calls = serving.audit_events(user)[before:]
    created = [e for e in calls if e["verb"] == "create" and e["objectRef"]["resource"] == "pods"]
    assert created and all(e["objectRef"]["namespace"] == NS for e in created), calls
    assert all(e["responseStatus"]["code"] == 201 for e in created), created
    for event in calls:
        reason = event.get("annotations", {}).get("authorization.k8s.io/reason", "")
        assert f'RoleBinding "{PIPELINE_ROLE}/{NS}" of Role "{PIPELINE_ROLE}"' in reason, event
    (pod,) = core.list_namespaced_pod(NS).items  # kept: the pod as the API server admitted it
    assert pod.spec.service_account_name == SA and pod.status.phase == "Succeeded"
    assert pod.spec.node_selector == {"role": "inference"}


def test_the_serving_cluster_gives_evaluation_no_more_than_pods(layout):
    serving = layout["inference"]
    api = serving.api_client(PIPELINE)
    with pytest.raises(client.ApiException) as refused:
        client.CustomObjectsApi(api).list_namespaced_custom_object("kubeflow.org", "v2beta1", NS, "mpijobs")
    assert refused.value.status == 403  # MPIJobs run on the training cluster only
    with pytest.raises(client.ApiException) as refused:
        client.CoreV1Api(api).list_node()
    assert refused.value.status == 403  # the GPU capacity check reads the training cluster's nodes
