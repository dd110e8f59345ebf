"""Quotas before a cluster is created (issue 22, fault 3), and the default GPU group.

Service Quotas answers come from botocore's Stubber on a real client (requests checked against
the service model, answers shaped like the API reference's ``GetServiceQuota``): moto 5.2.5's
service-quotas backend knows only the ``vpc`` quotas, and a fresh account's values (0 GPU
vCPUs, 5 standard vCPUs) must be chosen by the test. The quota codes and what they count are
AWS's (Service Quotas console, EC2: "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z)
instances" L-1216C47A, "Running On-Demand G and VT instances" L-DB2E81BA, both in vCPUs).
What this does not prove: that EC2 would refuse at exactly these numbers (it counts the vCPUs
of every running instance in the region, not only the cluster's).
"""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from eksml import preflight
from eksml.cluster.request import ClusterRequest, build_cluster_configs
from eksml.settings import Settings

REGION = "us-west-2"
STANDARD, GPU_G = "L-1216C47A", "L-DB2E81BA"


@pytest.fixture
def quotas():
    client = boto3.client("service-quotas", region_name=REGION, aws_access_key_id="k", aws_secret_access_key="s")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def answer(stub: Stubber, code: str, value: float) -> None:
    stub.add_response(
        "get_service_quota",
        {"Quota": {"QuotaCode": code, "Value": value, "ServiceCode": "ec2"}},
        {"ServiceCode": "ec2", "QuotaCode": code},
    )


def settings() -> Settings:
    return Settings(profile="aws", store_uri="s3://ml-store-bucket/eksml", region=REGION)


def test_the_default_gpu_group_is_one_gpu_per_node_and_starts_empty():
    (cfg,) = build_cluster_configs(ClusterRequest.from_settings(settings()))
    train = next(ng for ng in cfg.node_groups if ng.name == "ng-train")
    assert train.gpus_per_node == 1 and train.instance_types == ("g5.xlarge",)
    assert (train.min_size, train.desired_capacity) == (0, 0)


def test_a_fresh_account_fails_the_cluster_preflight_on_the_standard_quota(quotas):
    """5 standard vCPUs (a new account's) cannot run the m5.2xlarge inference node: found before
    eksctl builds a control plane whose node group would then time out."""
    client, stub = quotas
    answer(stub, STANDARD, 5.0)  # asked in quota-code order
    answer(stub, GPU_G, 0.0)  # the GPU group starts at 0 nodes: no GPU vCPU needed to create
    report = preflight.cluster_preflight(
        settings(), ClusterRequest.from_settings(settings()), clients=lambda _s: client
    )
    errors = [f for f in report.errors if f.check == "quota: ec2"]
    assert len(errors) == 1 and STANDARD in errors[0].message, report.text()
    assert "is 5 vCPUs; the node groups need 8 at their desired sizes" in errors[0].message
    assert f"--quota-code {STANDARD} --desired-value 8" in errors[0].fix
    gpu = next(f for f in report.findings if GPU_G in f.message)
    assert gpu.level == preflight.WARNING and "autoscaler stops below the max sizes (16 vCPUs)" in gpu.message


def test_the_trains_on_dedicated_cluster_counts_both_clusters_node_groups(quotas):
    client, stub = quotas
    answer(stub, STANDARD, 9.0)  # m5.2xlarge (8) + the training cluster's m5.large system node (2) = 10
    answer(stub, GPU_G, 16.0)
    req = ClusterRequest.from_settings(settings(), dedicated_training_cluster=True)
    report = preflight.cluster_preflight(settings(), req, clients=lambda _s: client)
    (error,) = [f for f in report.errors if f.check == "quota: ec2"]
    assert "need 10 at their desired sizes" in error.message
    assert "eksml-training/ng-system" in error.message and "eksml/ng-inference" in error.message


def test_enough_quota_passes_with_the_hourly_cost(quotas):
    client, stub = quotas
    answer(stub, STANDARD, 64.0)
    answer(stub, GPU_G, 64.0)
    report = preflight.cluster_preflight(
        settings(), ClusterRequest.from_settings(settings()), clients=lambda _s: client
    )
    assert report.errors == [], report.text()
    assert "eksml: $0.48/h (control plane $0.1/h, 0 x g5.xlarge $0.000/h, 1 x m5.2xlarge $0.384/h)" in report.estimate


def test_eks_cluster_runs_the_preflight_before_eksctl_creates_anything():
    from project_files import load_dag

    dag = load_dag("eks_cluster")
    assert "preflight" in dag.get_task("apply_cluster").upstream_task_ids
    assert dag.get_task("preflight").upstream_task_ids == {"choose"}
    assert dag.params["train_nodes"] == 0 and dag.params["train_instance_types"] == ["g5.xlarge"]


def test_the_aws_docs_quota_requests_pass_the_cluster_preflight(quotas):
    """The numbers docs/aws.md's 'First run on AWS' tells a fresh account to request are enough for the
    default cluster at its max sizes (no error, no warning), and one vCPU less is not."""
    import re

    from project_files import ROOT

    aws_doc = (ROOT / "docs" / "aws.md").read_text()
    asked = dict(re.findall(r"--quota-code (L-[0-9A-F]+) --desired-value (\d+)`", aws_doc))
    assert set(asked) == {STANDARD, GPU_G}
    client, stub = quotas
    for code in sorted(asked):
        answer(stub, code, float(asked[code]))
    report = preflight.cluster_preflight(
        settings(), ClusterRequest.from_settings(settings()), clients=lambda _s: client
    )
    assert [f.level for f in report.findings if f.check == "quota: ec2"] == [preflight.OK, preflight.OK], report.text()
    for code in sorted(asked):
        answer(stub, code, float(asked[code]) - 1)
    report = preflight.cluster_preflight(
        settings(), ClusterRequest.from_settings(settings()), clients=lambda _s: client
    )
    assert [f.level for f in report.findings if f.check == "quota: ec2"] == [preflight.WARNING, preflight.WARNING]
