"""The janitor against moto's EKS and CloudFormation (both implement what it reads: clusters with
tags and creation time, node groups, stacks with tags). A region of its own keeps the session's
other clusters out. What moto cannot show: the run states come from a stand-in for the task
SDK's ``get_dagrun_state``, and no deletion is run here (eksctl's delete is the operator's,
tested in tests/unit/test_eksctl_operator.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from eksml.cluster.janitor import EKSCTL_CLUSTER_TAG, find_strays, stray_cost
from eksml.cluster.lifecycle import DAG_ID_TAG, EPHEMERAL_TAG, RUN_ID_TAG

REGION = "eu-central-1"
ROLE = "arn:aws:iam::123456789012:role/eks"
TEMPLATE = json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}})
STATES = {"live": "running", "failed": "failed", "queued": "queued"}


def run_tags(run_id: str) -> dict[str, str]:
    return {EPHEMERAL_TAG: "abc", DAG_ID_TAG: "fashion_mnist_training", RUN_ID_TAG: run_id}


@pytest.fixture(scope="module")
def account(moto_client):
    eks, cloudformation = moto_client("eks", REGION), moto_client("cloudformation", REGION)

    def cluster(name: str, tags: dict[str, str], *groups: tuple[str, int]) -> None:
        eks.create_cluster(name=name, roleArn=ROLE, resourcesVpcConfig={"subnetIds": ["subnet-1"]}, tags=tags)
        for instance, nodes in groups:
            eks.create_nodegroup(
                clusterName=name,
                nodegroupName=f"ng-{instance.split('.')[0]}",
                instanceTypes=[instance],
                scalingConfig={"minSize": 0, "desiredSize": nodes, "maxSize": 4},
                subnets=["subnet-1"],
                nodeRole=ROLE,
            )

    def stack(name: str, cluster_name: str, tags: dict[str, str]) -> None:
        all_tags = {**tags, EKSCTL_CLUSTER_TAG: cluster_name}
        cloudformation.create_stack(
            StackName=name, TemplateBody=TEMPLATE, Tags=[{"Key": k, "Value": v} for k, v in all_tags.items()]
        )

    cluster("eksml-run-live", run_tags("live"), ("m5.2xlarge", 1))
    cluster("eksml-run-failed", run_tags("failed"), ("m5.2xlarge", 1), ("g5.xlarge", 1))
    cluster("eksml-run-lookup", run_tags("deleted-run"))
    cluster("eksml-run-untagged", {EPHEMERAL_TAG: "def"})  # made before runs were tagged: age only
    cluster("eksml", {"eksml/project": "eksml"})  # the shared cluster: never a stray
    stack("eksctl-eksml-run-gone-cluster", "eksml-run-gone", run_tags("gone"))  # its delete failed half-way
    stack("eksctl-eksml-run-failed-cluster", "eksml-run-failed", run_tags("failed"))  # goes with its cluster
    stack("eksctl-eksml-cluster", "eksml", {"eksml/project": "eksml"})
    return eks, cloudformation


def state_of(dag_id: str, run_id: str) -> str:
    if run_id not in STATES:
        raise LookupError(run_id)  # the run was deleted from the metadata database
    return STATES[run_id]


def test_clusters_of_finished_runs_and_lone_stacks_are_strays(account):
    eks, cloudformation = account
    now = datetime.now(UTC)
    strays = find_strays(eks, cloudformation, REGION, run_state=state_of, now=now, max_age=timedelta(hours=24))
    found = {(s.kind, s.name): s for s in strays}
    assert set(found) == {
        ("cluster", "eksml-run-failed"),
        ("cluster", "eksml-run-lookup"),
        ("stack", "eksctl-eksml-run-gone-cluster"),
    }
    assert "is failed" in found[("cluster", "eksml-run-failed")].reason
    assert "unknown (LookupError)" in found[("cluster", "eksml-run-lookup")].reason
    assert sorted(found[("cluster", "eksml-run-failed")].nodes) == [("g5.xlarge", 1), ("m5.2xlarge", 1)]

    total, lines = stray_cost(strays)
    assert total == pytest.approx(0.10 + 0.384 + 1.006 + 0.10)  # two control planes, two nodes
    assert any("eksml-run-failed: $1.49/h" in line for line in lines), lines
    assert any("eksctl-eksml-run-gone-cluster: stack without its cluster" in line for line in lines)


def test_past_the_age_limit_even_a_running_runs_cluster_is_a_stray_but_never_the_shared_one(account):
    eks, cloudformation = account
    later = datetime.now(UTC) + timedelta(hours=25)
    strays = find_strays(eks, cloudformation, REGION, run_state=state_of, now=later, max_age=timedelta(hours=24))
    clusters = {s.name for s in strays if s.kind == "cluster"}
    assert {"eksml-run-live", "eksml-run-untagged", "eksml-run-failed"} <= clusters
    assert "eksml" not in clusters and "eksctl-eksml-cluster" not in {s.name for s in strays}


def test_the_janitor_dag_runs_hourly_and_deletes_what_it_finds():
    from project_files import load_dag

    dag = load_dag("eks_janitor")
    assert dag.schedule == "@hourly" and dag.max_active_runs == 1
    assert dag.get_task("delete_cluster").upstream_task_ids == {"stray_clusters"}
    assert dag.get_task("delete_stack").upstream_task_ids == {"lone_stacks"}
    assert dag.get_task("stray_clusters").upstream_task_ids == {"find_strays"}
