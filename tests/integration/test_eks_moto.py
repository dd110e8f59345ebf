"""EKS API calls against a real moto server on loopback (the ``moto_server`` fixture).

moto emulates the EKS and STS APIs (clusters and node groups are ACTIVE at once); these
tests exercise the project's real code paths through the amazon provider's hooks and
triggers. They say nothing about a real EKS control plane.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shlex
import sys
import urllib.parse
from pathlib import Path

import pytest
from fixtures.moto_eks import REGION, create_cluster, inference_group, train_group

CLUSTER = "eksml-moto"
FAKE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "fake_eksctl"


@pytest.fixture(scope="module")
def eks_cluster(moto_server):
    """A cluster with the project's two node groups, created through the provider's EksHook."""
    create_cluster(CLUSTER, train_group(desired=1, max_size=4), inference_group())
    return CLUSTER


def test_describe_endpoint_and_node_groups(eks_cluster, moto_server):
    from eksml.cluster.connection import describe_endpoint
    from eksml.cluster.eks import describe_nodegroups

    endpoint = describe_endpoint(eks_cluster, REGION, "aws_default")
    assert endpoint.server.startswith("https://") and endpoint.certificate_authority
    assert endpoint.sts_url.startswith(moto_server) and "Action=GetCallerIdentity" in endpoint.sts_url
    groups = describe_nodegroups(eks_cluster, REGION, "aws_default")
    train = groups["ng-train"]
    assert (train.min_size, train.desired, train.max_size) == (0, 1, 4)
    assert train.labels == {"role": "train", "k8s.amazonaws.com/accelerator": "nvidia-a10g"} and train.taints == {
        ("nvidia.com/gpu", "present", "NoSchedule")
    }


def test_absent_cluster_is_a_clear_error(moto_server):
    from eksml.cluster.connection import ClusterNotReadyError, describe_endpoint

    with pytest.raises(ClusterNotReadyError, match="'absent' does not exist in us-west-2"):
        describe_endpoint("absent", REGION, "aws_default")


def test_node_groups_match_the_pipeline_or_fail_clearly(eks_cluster):
    from eksml.cluster.eks import describe_nodegroups, nodegroup_drift
    from eksml.cluster.request import ClusterRequest, inference_node_group, train_node_group
    from eksml.settings import Settings

    req = ClusterRequest.from_settings(Settings())
    actual = describe_nodegroups(eks_cluster, REGION, "aws_default")
    assert nodegroup_drift([train_node_group(req), inference_node_group(req)], actual) == ([], [])
    other = req.with_overrides({"train_instance_types": "g6.xlarge"})
    errors, warnings = nodegroup_drift([train_node_group(other)], {})
    assert errors == ["node group ng-train is missing (run the eks_cluster DAG with action=create)"]
    errors, warnings = nodegroup_drift([train_node_group(other)], actual)
    assert errors == [] and "runs ['g5.xlarge'], requested ['g6.xlarge']" in " ".join(warnings)
    assert "label k8s.amazonaws.com/accelerator='nvidia-a10g', expected 'nvidia-l4'" in " ".join(warnings)


def _token_of(hook) -> str:
    api = hook.get_conn()  # loads the kubeconfig and runs the exec plugin (token.py) as a subprocess
    header = api.configuration.api_key.get("authorization") or api.configuration.api_key.get("BearerToken")
    assert header and header.startswith("Bearer k8s-aws-v1.")
    return header.split(" ", 1)[1]


def _presigned_url(token: str) -> str:
    payload = token[len("k8s-aws-v1.") :]
    return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()


def test_printed_connection_works_on_any_worker(eks_cluster, moto_server, monkeypatch, capsys):
    """``python -m eksml.cluster connection``: no secret and no path of this machine in it, and
    its token is signed with the Airflow AWS connection's key, not the worker's ambient one."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    from eksml.cluster.__main__ import main

    assert (
        main(
            [
                "connection",
                "--cluster-name",
                eks_cluster,
                "--region",
                REGION,
                "--conn-id",
                "kubernetes_eksml_moto",
                "--namespace",
                "ml-training",
            ]
        )
        == 0
    )
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("AIRFLOW_CONN_")]
    name, _, quoted = line.partition("=")
    (value,) = shlex.split(quoted)
    assert name == "AIRFLOW_CONN_KUBERNETES_EKSML_MOTO"
    assert "testing" not in value  # the AWS connection's keys are not in it
    root = str(Path(__file__).resolve().parents[2])
    assert sys.executable not in value and root not in value and sys.prefix not in value
    kubeconfig = json.loads(value)["extra"]["kube_config"]
    assert kubeconfig["clusters"][0]["cluster"]["server"].startswith("https://")
    assert kubeconfig["users"][0]["user"]["exec"]["command"] == "python"
    monkeypatch.setenv(name, value)
    # Another worker: its `python` is its Airflow interpreter; its ambient AWS identity differs.
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAAMBIENTWORKER000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "ambient")
    url = urllib.parse.urlparse(_presigned_url(_token_of(KubernetesHook(conn_id="kubernetes_eksml_moto"))))
    query = dict(urllib.parse.parse_qsl(url.query))
    # What EKS checks: a GetCallerIdentity request to the regional STS endpoint, presigned
    # (SigV4, scope <region>/sts) with the cluster name bound in a signed header.
    assert f"{url.scheme}://{url.netloc}" == moto_server and query["Action"] == "GetCallerIdentity"
    assert query["X-Amz-Credential"].startswith("testing/")  # the aws_default connection's key
    assert query["X-Amz-Credential"].endswith(f"/{REGION}/sts/aws4_request")
    assert query["X-Amz-SignedHeaders"] == "host;x-k8s-aws-id" and len(query["X-Amz-Signature"]) == 64


def test_in_memory_hook_signs_with_the_airflow_aws_connection(eks_cluster, monkeypatch):
    from eksml.cluster.connection import eks_kubernetes_hook

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    hook = eks_kubernetes_hook(eks_cluster, REGION, aws_conn_id="aws_default")
    user = hook.config_dict["users"][0]["user"]["exec"]
    assert {e["name"] for e in user["env"]} >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert "X-Amz-Credential=testing" in _presigned_url(_token_of(hook))


def test_existing_mode_checks_the_cluster_through_the_eks_api(eks_cluster, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from eksml.cluster.lifecycle import EksctlClusterOperator

    monkeypatch.setenv("EKSML_STORE_URI", "s3://ml-store-bucket/eksml")
    op = EksctlClusterOperator(task_id="check", action="create", cluster_mode="existing", cluster={"name": eks_cluster})
    result = op.execute({"run_id": "r1"})
    assert result["clusters"][0]["status"] == "ACTIVE" and result["training_cluster"] == eks_cluster
    missing = EksctlClusterOperator(
        task_id="check2", action="create", cluster_mode="existing", cluster={"name": "absent"}
    )
    with pytest.raises(AirflowFailException, match="is NONEXISTENT, not ACTIVE"):
        missing.execute({"run_id": "r1"})


def test_interrupted_create_is_waited_for_with_the_eks_trigger_then_converged(eks_cluster, tmp_path, monkeypatch):
    """eksctl is the stand-in (tests/fixtures/fake_eksctl); the wait runs the provider's
    EksCreateClusterTrigger against moto's EKS API. Shows the recovery path's commands only."""
    from airflow.sdk.exceptions import TaskDeferred

    from eksml.cluster.lifecycle import EksctlClusterOperator
    from eksml.cluster.triggers import first_event

    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), str(FAKE_DIR), os.environ["PATH"]]))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("EKSML_STORE_URI", "s3://ml-store-bucket/eksml")
    state = tmp_path / ".fake_eksctl" / "state.json"
    state.parent.mkdir()
    groups = {
        g: {"Name": g, "Status": "ACTIVE", "MinSize": mn, "DesiredCapacity": d, "MaxSize": mx, "InstanceType": t}
        for g, (mn, d, mx, t) in {"ng-train": (0, 1, 4, "p3.8xlarge"), "ng-inference": (1, 1, 3, "m5.2xlarge")}.items()
    }
    state.write_text(
        json.dumps(
            {"clusters": {eks_cluster: {"Status": "CREATING", "Version": "1.33", "Tags": {}, "nodegroups": groups}}}
        )
    )

    op = EksctlClusterOperator(task_id="create", action="create", cluster={"name": eks_cluster}, poll_interval=1)
    context = {"run_id": "r1"}
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    assert type(trigger).__name__ == "EksCreateClusterTrigger"
    event = asyncio.run(first_event(trigger))  # aiobotocore waiter against moto
    assert event["status"] == "success"
    data = json.loads(state.read_text())
    data["clusters"][eks_cluster]["Status"] = "ACTIVE"  # what EKS reports once eksctl's stacks finished
    state.write_text(json.dumps(data))
    with pytest.raises(TaskDeferred) as converge:
        op.execute_after_wait(context, event, **deferred.value.kwargs)
    event = asyncio.run(first_event(converge.value.trigger))
    result = getattr(op, converge.value.method_name)(context, event, **converge.value.kwargs)
    calls = [json.loads(line)["argv"][:2] for line in (state.parent / "calls.jsonl").read_text().splitlines()]
    assert ["utils", "associate-iam-oidc-provider"] in calls and ["create", "iamserviceaccount"] in calls
    assert ["create", "cluster"] not in calls and result["clusters"][0]["status"] == "ACTIVE"
