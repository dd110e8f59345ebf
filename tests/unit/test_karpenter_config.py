"""Karpenter mode in the rendered ClusterConfig: the controller's IRSA role with the statements of
Karpenter's getting-started template (vendored), filled in for the cluster, and the nodes' role's
EC2_LINUX access entry; checked against eksctl's published schema."""

from __future__ import annotations

import json

import pytest
import yaml
from fixtures.published_schemas import eksctl_cluster_config_schema

from eksml.cluster.config import ClusterConfigError, render_stream
from eksml.cluster.karpenter_aws import controller_policy, fill, template
from eksml.cluster.request import ClusterRequest, build_cluster_configs
from eksml.settings import Settings

ACCOUNT = "123456789012"
CREATOR = f"arn:aws:iam::{ACCOUNT}:role/eksml-lifecycle"
KARPENTER = Settings(profile="aws", store_uri="s3://eksml-bucket/store", node_scaler="karpenter")


def _configs(settings: Settings = KARPENTER, **overrides) -> list[dict]:
    request = ClusterRequest.from_settings(settings, **{"creator_arn": CREATOR, **overrides})
    return [yaml.safe_load(doc) for doc in render_stream(build_cluster_configs(request)).split("---\n")]


def _karpenter_account(doc: dict) -> dict | None:
    accounts = doc["iam"].get("serviceAccounts", [])
    return next((a for a in accounts if a["metadata"]["name"] == "karpenter"), None)


@pytest.mark.parametrize("dedicated", [False, True], ids=["shared", "dedicated"])
def test_karpenter_parts_are_valid_against_eksctls_schema(dedicated):
    import jsonschema

    validator = jsonschema.Draft7Validator(eksctl_cluster_config_schema())
    for doc in _configs(dedicated_training_cluster=dedicated):
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(doc)]
        assert errors == []


def test_the_controller_role_holds_the_templates_statements_filled_in_for_the_cluster():
    (doc,) = _configs()
    account = _karpenter_account(doc)
    assert account["metadata"] == {"name": "karpenter", "namespace": "kube-system"}
    assert account["roleName"] == "KarpenterControllerRole-eksml" and account["roleOnly"] is True
    policy = account["attachPolicy"]
    published = [s for d in template()["ControllerPolicies"].values() for s in d["Statement"]]
    assert [s.get("Sid") for s in policy["Statement"]] == [s.get("Sid") for s in published]
    text = json.dumps(policy)
    assert "${" not in text
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["AllowPassingInstanceRole"]["Resource"] == f"arn:aws:iam::{ACCOUNT}:role/KarpenterNodeRole-eksml"
    assert by_sid["AllowInterruptionQueueActions"]["Resource"] == f"arn:aws:sqs:us-west-2:{ACCOUNT}:eksml"
    assert by_sid["AllowAPIServerEndpointDiscovery"]["Resource"] == f"arn:aws:eks:us-west-2:{ACCOUNT}:cluster/eksml"
    condition = by_sid["AllowScopedDeletion"]["Condition"]["StringEquals"]
    assert condition == {"aws:ResourceTag/kubernetes.io/cluster/eksml": "owned"}
    # IAM's limit on a role's inline policies, whitespace not counted
    assert len(json.dumps(policy, separators=(",", ":"))) < 10240


def test_the_nodes_role_joins_the_cluster_as_ec2_linux_nodes():
    (doc,) = _configs()
    entries = doc["accessConfig"]["accessEntries"]
    node = {"principalARN": f"arn:aws:iam::{ACCOUNT}:role/KarpenterNodeRole-eksml", "type": "EC2_LINUX"}
    assert node in entries
    assert [e for e in entries if e["principalARN"] == CREATOR][0]["kubernetesGroups"] == ["eksml-pipeline"]


def test_only_the_cluster_that_trains_gets_karpenter():
    training, serving = _configs(dedicated_training_cluster=True)
    assert training["metadata"]["name"] == "eksml-training" and _karpenter_account(training)
    assert _karpenter_account(serving) is None
    assert not [e for e in serving["accessConfig"]["accessEntries"] if e.get("type") == "EC2_LINUX"]
    assert _karpenter_account(training)["roleName"] == "KarpenterControllerRole-eksml-training"


def test_no_karpenter_without_the_setting_and_no_node_entry_without_an_account():
    (default,) = _configs(Settings(profile="aws", store_uri="s3://eksml-bucket/store"))
    assert _karpenter_account(default) is None
    assert not [e for e in default["accessConfig"]["accessEntries"] if e.get("type")]
    # offline rendering: no principal, so no account: the policy names any account, no entry is made
    (offline,) = [c.to_dict() for c in build_cluster_configs(ClusterRequest.from_settings(KARPENTER, creator_arn=None))]
    assert "accessConfig" not in offline
    assert "arn:aws:iam::*:role/KarpenterNodeRole-eksml" in json.dumps(_karpenter_account(offline)["attachPolicy"])


def test_a_cluster_name_too_long_for_karpenters_names_is_refused():
    with pytest.raises(ClusterConfigError, match="EventBridge rule .* exceeds 64 characters"):
        build_cluster_configs(ClusterRequest.from_settings(KARPENTER, name="a-rather-long-cluster-name-for-karpenter"))


def test_an_unknown_template_reference_is_refused():
    assert fill({"k-${ClusterName}": ["${ClusterName}"]}, {"ClusterName": "c"}) == {"k-c": ["c"]}
    with pytest.raises(ValueError, match="no value for AWS::StackName"):
        fill("${AWS::StackName}", {})
    assert controller_policy("c", "cn-north-1", ACCOUNT)["Statement"][0]["Resource"][0].startswith("arn:aws-cn:ec2:")
