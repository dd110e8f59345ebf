"""Access entries and RBAC in the three cases: the default pipeline principal (the creator), the
creator named explicitly, another principal; and cluster admin held only while add-ons apply.

EKS answers come from botocore's Stubber on a real client (moto does not implement access
entries or access policies), shaped like the EKS API reference's responses."""

from __future__ import annotations

import pytest

from eksml.cluster.request import PIPELINE_GROUP, ClusterRequest, build_cluster_configs
from eksml.settings import Settings

STORE = "s3://ml-store-bucket/eksml"
AIRFLOW = "arn:aws:iam::123456789012:role/airflow"
OTHER = "arn:aws:iam::123456789012:role/ml-platform-runner"


def access_config(**overrides) -> dict:
    req = ClusterRequest.from_settings(Settings(store_uri=STORE), **overrides)
    (cfg,) = build_cluster_configs(req)
    return cfg.to_dict()["accessConfig"]


CREATION_GRANT = [
    {
        "policyARN": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
        "accessScope": {"type": "cluster"},
    }
]


def test_default_binds_the_pipeline_identity_to_its_group_with_the_creation_grant():
    """The creator must read nodes during eksctl's own post-create wait (tests/k8s/test_k8s_creator_access.py);
    the grant is removed by the add-ons step, after which only the group's Roles remain."""
    access = access_config(creator_arn=AIRFLOW)
    assert access["accessEntries"] == [
        {"principalARN": AIRFLOW, "kubernetesGroups": [PIPELINE_GROUP], "accessPolicies": CREATION_GRANT}
    ]
    assert access["bootstrapClusterCreatorAdminPermissions"] is False  # no admin entry besides it


def test_creator_named_explicitly_gets_one_entry_not_two():
    """eksctl's creator-admin entry plus ours for the same principal: 'access entry already in use'."""
    access = access_config(creator_arn=AIRFLOW, pipeline_principal_arn=AIRFLOW)
    assert [e["principalARN"] for e in access["accessEntries"]] == [AIRFLOW]
    assert access["bootstrapClusterCreatorAdminPermissions"] is False
    assert access["accessEntries"][0]["accessPolicies"] == CREATION_GRANT


def test_another_principal_gets_the_group_and_the_creator_keeps_admin():
    access = access_config(creator_arn=AIRFLOW, pipeline_principal_arn=OTHER)
    assert access["accessEntries"] == [{"principalARN": OTHER, "kubernetesGroups": [PIPELINE_GROUP]}]
    assert access["bootstrapClusterCreatorAdminPermissions"] is True


def test_the_group_is_what_the_project_roles_bind():
    from eksml.cluster.objects import render_kubernetes_objects

    objects = render_kubernetes_objects(Settings(store_uri=STORE), account_id="123456789012")
    bindings = [
        o
        for o in objects
        if o["kind"] in ("RoleBinding", "ClusterRoleBinding") and o["metadata"]["name"].startswith("eksml")
    ]
    assert bindings and all(
        s == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": PIPELINE_GROUP}
        for b in bindings
        for s in b["subjects"]
    )
    assert not any(b["roleRef"]["name"] == "cluster-admin" for b in bindings)


def test_session_arns_map_to_their_role():
    from eksml.cluster.iam import principal_arn

    assert principal_arn("arn:aws:sts::123456789012:assumed-role/airflow/botocore-session-1") == AIRFLOW
    assert principal_arn("arn:aws:iam::123456789012:user/ops") == "arn:aws:iam::123456789012:user/ops"


@pytest.fixture
def eks_stub(monkeypatch):
    import boto3
    from airflow.providers.amazon.aws.hooks.eks import EksHook
    from botocore.stub import Stubber

    client = boto3.client("eks", region_name="us-west-2", aws_access_key_id="k", aws_secret_access_key="s")
    monkeypatch.setattr(EksHook, "conn", property(lambda self: client))
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


ADMIN = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
KEY = {"clusterName": "eksml", "principalArn": OTHER}


def test_add_ons_hold_cluster_admin_only_while_they_apply(eks_stub):
    from eksml.cluster.eks import cluster_admin_while

    eks_stub.add_response(
        "list_associated_access_policies",
        {"clusterName": "eksml", "principalArn": OTHER, "associatedAccessPolicies": []},
        KEY,
    )
    eks_stub.add_response(
        "associate_access_policy",
        {"clusterName": "eksml", "principalArn": OTHER},
        {**KEY, "policyArn": ADMIN, "accessScope": {"type": "cluster"}},
    )
    eks_stub.add_response("disassociate_access_policy", {}, {**KEY, "policyArn": ADMIN})
    applied = []
    with pytest.raises(RuntimeError, match="apply failed"):
        with cluster_admin_while("eksml", "us-west-2", OTHER, "aws_default", log=applied.append):
            applied.append("apply")
            raise RuntimeError("apply failed")  # admin is removed even then
    assert applied[1] == "apply" and "removed" in applied[-1]


def test_a_principal_that_is_admin_already_keeps_it(eks_stub):
    from eksml.cluster.eks import cluster_admin_while

    _held_admin(eks_stub)
    with cluster_admin_while("eksml", "us-west-2", OTHER, "aws_default", log=lambda m: None):
        pass  # no associate, no disassociate: the Stubber would fail on an unexpected call


def _held_admin(eks_stub):
    eks_stub.add_response(
        "list_associated_access_policies",
        {
            "clusterName": "eksml",
            "principalArn": OTHER,
            "associatedAccessPolicies": [{"policyArn": ADMIN, "accessScope": {"type": "cluster"}}],
        },
        KEY,
    )


def _described(eks_stub, tags):
    cluster = {"name": "eksml", "arn": "arn:aws:eks:us-west-2:123456789012:cluster/eksml", "tags": tags}
    eks_stub.add_response("describe_cluster", {"cluster": cluster}, {"name": "eksml"})


def test_the_creation_grant_is_removed_after_the_add_ons(eks_stub):
    """A pipeline principal that created the cluster held admin through eksctl's post-create steps;
    once the project's RBAC is applied it keeps only its group's Roles."""
    from eksml.cluster.eks import cluster_admin_while
    from eksml.cluster.request import PROJECT_TAG

    _held_admin(eks_stub)
    _described(eks_stub, {PROJECT_TAG: "eksml"})
    eks_stub.add_response("disassociate_access_policy", {}, {**KEY, "policyArn": ADMIN})
    with cluster_admin_while("eksml", "us-west-2", OTHER, "aws_default", log=lambda m: None, creation_grant=True):
        pass


def test_admin_on_a_cluster_the_project_did_not_make_is_kept_even_as_creator(eks_stub):
    from eksml.cluster.eks import cluster_admin_while

    _held_admin(eks_stub)
    _described(eks_stub, {"team": "platform"})
    with cluster_admin_while("eksml", "us-west-2", OTHER, "aws_default", log=lambda m: None, creation_grant=True):
        pass  # no disassociate: the Stubber would fail on an unexpected call
