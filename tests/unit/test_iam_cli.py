"""``python -m eksml.cluster.eksctl iam <identity>`` prints every identity's policy, the lifecycle
identity and its permissions boundary included; eksctl signs with the lifecycle connection."""

from __future__ import annotations

import json

import pytest

from eksml.cluster.eksctl import main
from eksml.cluster.lifecycle import EksctlClusterOperator
from eksml.settings import Settings


@pytest.fixture(autouse=True)
def _aws_store(monkeypatch):
    monkeypatch.setenv("EKSML_STORE_URI", "s3://eksml-store/eksml")
    monkeypatch.setenv("EKSML_CLUSTER_NAME", "mlx")


def _printed(capsys, *argv: str) -> dict:
    assert main(["iam", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_lifecycle_policy_and_boundary_are_printed_scoped_to_the_cluster(capsys):
    policy = _printed(capsys, "lifecycle", "--account-id", "123456789012")
    sids = {st["Sid"]: st for st in policy["Statement"]}
    assert "arn:aws:eks:us-west-2:123456789012:cluster/mlx" in sids["ProjectClusters"]["Resource"]
    assert sids["ProjectStacks"]["Resource"] == ["arn:aws:cloudformation:us-west-2:123456789012:stack/eksctl-mlx-*/*"]
    boundary = _printed(capsys, "lifecycle-boundary", "--account-id", "123456789012")
    assert {st["Effect"] for st in boundary["Statement"]} == {"Allow", "Deny"}


def test_pipeline_policy_scopes_access_entries_and_names_the_kms_key(capsys, monkeypatch):
    key = "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    monkeypatch.setenv("EKSML_STORE_KMS_KEY_ARN", key)
    policy = _printed(capsys, "pipeline", "--account-id", "123456789012")
    sids = {st["Sid"]: st for st in policy["Statement"]}
    assert sids["EksAddonInstallAdmin"]["Resource"] == [
        "arn:aws:eks:us-west-2:123456789012:access-entry/mlx/*",
        "arn:aws:eks:us-west-2:123456789012:access-entry/mlx-*/*",
    ]
    assert sids["StoreKmsKeyThroughS3"]["Resource"] == key
    assert not any("cloudformation" in json.dumps(st) for st in policy["Statement"])


def test_a_bad_kms_key_setting_is_refused():
    with pytest.raises(ValueError, match="store_kms_key_arn must be a KMS key ARN"):
        Settings(store_kms_key_arn="alias/my-key")


@pytest.mark.parametrize(("lifecycle", "expected"), [("", "aws_default"), ("aws_lifecycle", "aws_lifecycle")])
def test_eksctl_runs_as_the_lifecycle_connection(lifecycle, expected):
    op = EksctlClusterOperator(task_id="c", settings=Settings(lifecycle_aws_conn_id=lifecycle))
    assert op.resolved_aws_conn_id() == expected
    assert (
        EksctlClusterOperator(task_id="c2", aws_conn_id="given", settings=Settings()).resolved_aws_conn_id() == "given"
    )
