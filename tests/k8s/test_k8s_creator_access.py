"""Creator access (issue 22, fault 1): what eksctl does right after ``create cluster``, replayed
as the identity the rendered ClusterConfig gives the creator, on a real API server.

eksctl v0.215.0, ``pkg/ctl/create/cluster.go`` (post-creation action): once the node group
stacks exist it builds a clientset from the creator's credentials and, for every managed node
group with ``minSize`` >= 1, calls ``eks.WaitForNodes`` (``pkg/eks/client.go``): a *watch* of the
nodes selected by ``alpha.eksctl.io/nodegroup-name=<group>`` (``NodeGroupBase.ListOptions``,
``pkg/apis/eksctl.io/v1alpha5/types.go``), then a *list* of them. A refusal returns "creating
node watcher: ... forbidden" and the command exits non-zero, before ``prepare_cluster`` has made
any RoleBinding. The replay then runs ``prepare_cluster`` (the project's objects, applied as the
creator) and the removal of the creation grant.

How the ClusterConfig's access settings become an identity here (EKS user guide, "Grant IAM
users access to Kubernetes with EKS access entries" and "Review access policy permissions"):
an access entry's ``kubernetesGroups`` are the groups of the user the API server sees (a client
certificate here); ``AmazonEKSClusterAdminPolicy`` at cluster scope, or
``bootstrapClusterCreatorAdminPermissions: true`` (EKS associates that policy with the creator's
entry), is ``*`` on every resource and non-resource URL: a ClusterRoleBinding to
``cluster-admin`` here. What this does not prove: on EKS access policies are decided by EKS's
own authorizer webhook, not by RBAC objects, and nothing here checks that EKS accepts the
entries (tests/unit/test_access_entries.py checks their shape).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ACCOUNT_ID, _start, aws_settings
from k8s_controlplane import ControlPlane, remove_workdir
from kubernetes import client, watch

from eksml.cluster.config import AccessEntry
from eksml.cluster.request import PIPELINE_GROUP, ClusterRequest, build_cluster_configs

pytestmark = pytest.mark.k8s

CREATOR = "arn:aws:iam::123456789012:role/airflow"
NODEGROUP_LABEL = "alpha.eksctl.io/nodegroup-name"  # eksctl v0.215.0 v1alpha5.NodeGroupNameLabel
#: As the EKS user guide spells it ("Review access policy permissions"), not taken from our code.
EKS_CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"


@pytest.fixture(scope="module")
def new_cluster(k8s_bin_dir: Path) -> Iterator[ControlPlane]:
    """A cluster as eksctl leaves it: nodes joined, none of the project's RBAC applied yet (the
    shared planes of this tier are prepared by other tests, so this one is its own)."""
    plane = _start("creator", k8s_bin_dir)
    yield plane
    plane.stop()
    remove_workdir(plane.workdir)


def rendered_config() -> dict[str, Any]:
    """The shared cluster's ClusterConfig as the operator renders it when the Airflow identity creates it."""
    request = ClusterRequest.from_settings(aws_settings("unused"), creator_arn=CREATOR)
    (config,) = build_cluster_configs(request)
    return config.to_dict()


def as_creator(plane: ControlPlane, key: str, access: dict[str, Any]) -> Any:
    """An API client acting as the creator with what ``access`` (an ``accessConfig``) gives it."""
    entry = next((e for e in access.get("accessEntries", []) if e["principalARN"] == CREATOR), None)
    groups = tuple(entry["kubernetesGroups"]) if entry else ()
    admin = access.get("bootstrapClusterCreatorAdminPermissions", True) or any(
        p["policyARN"] == EKS_CLUSTER_ADMIN_POLICY and p["accessScope"]["type"] == "cluster"
        for p in (entry or {}).get("accessPolicies", [])
    )
    user = f"creator-{key}"
    plane.add_identity(key, user, groups)
    if admin:
        binding = {
            "metadata": {"name": f"access-policy-{user}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }
        client.RbacAuthorizationV1Api(plane.api_client("admin")).create_cluster_role_binding(binding)
    return plane.api_client(key)


def eksctl_waits_for_nodes(api: Any, config: dict[str, Any]) -> dict[str, int]:
    """``eks.WaitForNodes`` for each managed node group with min >= 1: watch, then list (bounded)."""
    core = client.CoreV1Api(api)
    ready: dict[str, int] = {}
    for group in config["managedNodeGroups"]:
        if group["minSize"] == 0:
            continue  # WaitForNodes returns at once for minSize 0
        selector = f"{NODEGROUP_LABEL}={group['name']}"
        watcher = watch.Watch()
        for _event in watcher.stream(core.list_node, label_selector=selector, timeout_seconds=5):
            watcher.stop()  # the watch was allowed and delivers the group's nodes
        nodes = core.list_node(label_selector=selector).items
        ready[group["name"]] = sum(
            1 for n in nodes if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
        )
    return ready


def test_a_group_only_entry_as_main_rendered_it_is_refused_eksctls_wait(new_cluster):
    """The entry main rendered for the creator: the pipeline's group, no access policy, no
    bootstrap admin. Before prepare_cluster nothing binds that group, so the wait is refused
    (this test runs first: the next one applies the project's RBAC to this cluster)."""
    entry = AccessEntry(principal_arn=CREATOR, kubernetes_groups=(PIPELINE_GROUP,))
    access = {"bootstrapClusterCreatorAdminPermissions": False, "accessEntries": [entry.to_dict()]}
    api = as_creator(new_cluster, "group-only", access)
    with pytest.raises(client.ApiException) as refused:
        eksctl_waits_for_nodes(api, rendered_config())
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert 'User "creator-group-only" cannot watch resource "nodes"' in message, message  # the watch comes first


def test_the_rendered_config_lets_the_creator_through_eksctls_wait_and_prepare_cluster(new_cluster):
    config = rendered_config()
    api = as_creator(new_cluster, "fixed", config["accessConfig"])

    ready = eksctl_waits_for_nodes(api, config)  # refused with main's config: see the test above
    assert ready == {"ng-inference": 2}, ready  # ng-train starts at 0 nodes: not waited for

    from eksml.cluster.addons import addon_objects
    from eksml.cluster.apply import apply_objects
    from eksml.cluster.objects import render_kubernetes_objects

    settings = aws_settings("unused")
    objects = [o for o in addon_objects() if o["kind"] != "Deployment"]
    objects += render_kubernetes_objects(settings, account_id=ACCOUNT_ID)
    apply_objects(api, objects, log=lambda _m: None)  # prepare_cluster, as the creator

    # the add-ons step removes the creation grant: the principal keeps only its group's Roles
    client.RbacAuthorizationV1Api(new_cluster.api_client("admin")).delete_cluster_role_binding(
        "access-policy-creator-fixed"
    )
    core = client.CoreV1Api(api)
    assert eksctl_waits_for_nodes(api, config) == ready  # a later `eksctl create nodegroup` still waits
    with pytest.raises(client.ApiException) as refused:
        core.list_namespaced_secret(settings.namespace)
    assert refused.value.status == 403  # no longer cluster admin
