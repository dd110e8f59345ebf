"""RBAC: the pipeline acts with its own identity, inside the Roles the project renders, and the
real API server refuses anything else.

The identity is a client certificate whose groups are what an EKS access entry gives the
Airflow workers' IAM principal; the permissions come only from the project's Roles and
RoleBindings (applied by the add-ons step). The API server's audit log records who made each
call and which binding allowed it.
"""

from __future__ import annotations

import json

import pytest
from conftest import PIPELINE, aws_settings
from k8s_tasks import run_task, task_context
from kubernetes import client

from eksml.cluster.objects import PIPELINE_ROLE
from eksml.kubernetes.operators import WorkloadPodOperator, render_training_pod
from eksml.specs import Resources, WorkloadSpec

pytestmark = pytest.mark.k8s

TRAINING, SERVING = "ml-training", "ml-serving"
PROBE = WorkloadSpec(
    name="rbac-probe",
    image="tf-fashion-mnist",
    script="train.py",
    resources=Resources(cpu="1", memory="1Gi", gpus=0),
    node_role="inference",
)


def _refused(call, *args, **kwargs) -> client.ApiException:
    with pytest.raises(client.ApiException) as refused:
        call(*args, **kwargs)
    assert refused.value.status == 403, refused.value.body
    return refused.value


def test_pipeline_task_calls_are_its_own_and_allowed_by_the_projects_roles(prepared_cluster, pipeline_conn):
    user = prepared_cluster.identities[PIPELINE].user
    before = len(prepared_cluster.audit_events(user))
    operator = WorkloadPodOperator(
        task_id="rbac_probe",
        spec=PROBE.to_dict(),
        settings=aws_settings(pipeline_conn),
        deferrable=True,
        poll_interval=0.5,
        on_finish_action="delete_pod",
        logging_interval=60,
    )  # see test_k8s_gpu_pod: kwok and followed logs
    run_task(operator, task_context("rbac_probe"))

    calls = prepared_cluster.audit_events(user)[before:]
    seen = {(e["verb"], e["objectRef"]["resource"], e["objectRef"].get("subresource", "")) for e in calls}
    assert {("create", "pods", ""), ("get", "pods", "log"), ("delete", "pods", "")} <= seen, seen
    for event in calls:  # (a request the client gave up on, as a finished trigger does, is logged as 500)
        annotations = event.get("annotations", {})
        assert annotations.get("authorization.k8s.io/decision") == "allow", event
        assert (
            f'RoleBinding "{PIPELINE_ROLE}/{TRAINING}" of Role "{PIPELINE_ROLE}"'
            in annotations["authorization.k8s.io/reason"]
        ), event
        assert event["responseStatus"]["code"] != 403, event


def test_calls_outside_the_roles_are_refused(prepared_cluster):
    api = prepared_cluster.api_client(PIPELINE)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    pod = render_training_pod(PROBE, aws_settings("unused"), name="rbac-refused")

    _refused(core.list_namespaced_secret, TRAINING)  # no secrets anywhere
    _refused(core.create_namespaced_pod, "kube-system", pod)  # only the pipeline's namespaces
    _refused(core.create_namespaced_pod, "default", pod)
    _refused(core.connect_get_namespaced_pod_exec, "any", TRAINING, command=["sh"], stdout=True)  # no exec
    _refused(
        apps.create_namespaced_deployment,
        TRAINING,
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {}},
    )
    _refused(core.create_namespaced_pod, SERVING, {**pod, "metadata": {"name": "rbac-refused"}})  # serving: read only
    _refused(
        client.RbacAuthorizationV1Api(api).create_namespaced_role_binding,
        TRAINING,
        {
            "metadata": {"name": "escalate"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "Group", "name": "eksml-pipeline", "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )
    refused = _refused(core.list_namespaced_pod, "kube-system")
    assert 'User "eksml-pipeline" cannot list resource "pods"' in json.loads(refused.body)["message"]


def test_an_identity_without_the_projects_binding_can_do_nothing(prepared_cluster):
    """The permissions come from the project's RoleBindings, not from being authenticated."""
    from eksml.cluster.request import PIPELINE_GROUP

    plane = prepared_cluster
    outsider = "outsider"
    if outsider not in plane.identities:
        plane.add_identity(outsider, "eksml-outsider", ("not-" + PIPELINE_GROUP,))
    core = client.CoreV1Api(plane.api_client(outsider))
    _refused(core.list_namespaced_pod, TRAINING)
    _refused(core.create_namespaced_pod, TRAINING, render_training_pod(PROBE, aws_settings("unused"), name="x"))
