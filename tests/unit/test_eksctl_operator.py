"""Operator decisions (create vs reuse vs scale, a failed create, ephemeral safety).

eksctl here is tests/fixtures/fake_eksctl/eksctl, a small stand-in run as a real
subprocess: it answers from a JSON state file and records the argv it was given. These
tests show which eksctl commands the operator runs, in which order, with which files,
and that its output is redacted; they prove nothing about EKS or about eksctl itself.
Deferrals are resolved by running the trigger the operator hands over (after a
serialize/re-create round trip, as the triggerer does) and resuming the named method.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from eksml.cluster.lifecycle import EPHEMERAL_TAG, EksctlClusterOperator, ephemeral_cluster_name, run_hash
from eksml.cluster.triggers import EksctlCommandTrigger, first_event

FAKE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "fake_eksctl"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
RUN_ID = "manual__2026-05-01T00:00:00+00:00"


class Fake:
    """View of the stand-in's files under $HOME/.fake_eksctl."""

    def __init__(self, home: Path) -> None:
        self.root = home / ".fake_eksctl"
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_path, self.log_path = self.root / "state.json", self.root / "calls.jsonl"

    def control(self, **settings) -> None:
        (self.root / "control.json").write_text(json.dumps(settings))

    def calls(self) -> list[list[str]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line)["argv"] for line in self.log_path.read_text().splitlines()]

    def configs(self) -> list[dict]:
        return [
            yaml.safe_load(c["config"]) for c in map(json.loads, self.log_path.read_text().splitlines()) if c["config"]
        ]

    def verbs(self) -> list[str]:
        return [" ".join(a[:2]) for a in self.calls()]

    def state(self) -> dict:
        return json.loads(self.state_path.read_text())["clusters"] if self.state_path.exists() else {}

    def seed(self, name: str, *, status: str = "ACTIVE", tags: dict | None = None, groups: dict | None = None) -> None:
        clusters = self.state()
        groups = (
            groups
            if groups is not None
            else {"ng-train": (0, 0, 4, "g5.xlarge"), "ng-inference": (1, 1, 3, "m5.2xlarge")}
        )
        clusters[name] = {
            "Status": status,
            "Version": "1.33",
            "Tags": tags or {},
            "nodegroups": {
                g: {
                    "Name": g,
                    "Status": "ACTIVE",
                    "MinSize": mn,
                    "DesiredCapacity": d,
                    "MaxSize": mx,
                    "InstanceType": t,
                }
                for g, (mn, d, mx, t) in groups.items()
            },
        }
        self.state_path.write_text(json.dumps({"clusters": clusters}))


@pytest.fixture
def fake(tmp_path, monkeypatch, moto_server) -> Fake:
    # python3 on PATH must be this interpreter (the stand-in imports yaml for -f files).
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), str(FAKE_DIR), os.environ["PATH"]]))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("EKSML_STORE_URI", "s3://ml-store-bucket/eksml")
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps(
            # STS (who creates the cluster, for its access entries) answers from the moto server
            {
                "conn_type": "aws",
                "login": ACCESS_KEY,
                "password": SECRET_KEY,
                "extra": {"region_name": "us-west-2", "endpoint_url": moto_server},
            }
        ),
    )
    monkeypatch.delenv("EKSML_EKSCTL", raising=False)
    return Fake(tmp_path)


def run(op: EksctlClusterOperator, context: dict | None = None, *, on_defer=None, event_only: bool = False):
    """Execute, resolving deferrals as the triggerer would; return (result, deferral count).

    ``event_only`` resumes with the event alone, as ``airflow dags test`` does."""
    context = context or {"run_id": RUN_ID}
    deferrals = 0
    call = lambda: op.execute(context)  # noqa: E731
    while True:
        try:
            return call(), deferrals
        except TaskDeferred as deferred:
            deferrals += 1
            classpath, kwargs = deferred.trigger.serialize()
            json.dumps(kwargs)  # what the triggerer stores must be plain JSON
            if on_defer:
                on_defer(deferred)
            trigger = type(deferred.trigger)(**kwargs)
            event = asyncio.run(first_event(trigger))
            kwargs = {} if event_only else (deferred.kwargs or {})
            call = lambda d=deferred, e=event, k=kwargs: getattr(op, d.method_name)(context, e, **k)  # noqa: E731


def op(**kwargs) -> EksctlClusterOperator:
    return EksctlClusterOperator(task_id="cluster", **kwargs)


def test_create_when_absent_defers_to_the_trigger_and_creates_once(fake):
    result, deferrals = run(op(action="create"))
    assert deferrals == 1
    assert fake.verbs() == [
        "version",
        "get cluster",
        "version",
        "get cluster",
        "create cluster",
        "version",
        "get cluster",
        "get nodegroup",
    ]
    create = next(a for a in fake.calls() if a[:2] == ["create", "cluster"])
    assert "--install-nvidia-plugin=false" in create and "--write-kubeconfig=false" in create
    (config,) = fake.configs()
    assert config["metadata"]["name"] == "eksml" and [g["name"] for g in config["managedNodeGroups"]] == [
        "ng-train",
        "ng-inference",
    ]
    (cluster,) = result["clusters"]
    assert cluster["created"] is True and cluster["status"] == "ACTIVE"
    assert cluster["nodegroups"]["ng-train"]["desired"] == 0 and result["training_cluster"] == "eksml"


def test_existing_cluster_at_requested_sizes_is_reused_untouched(fake):
    fake.seed("eksml")
    result, deferrals = run(op(action="create"))
    assert deferrals == 0 and result["clusters"][0]["created"] is False
    assert not any(v.split()[0] in ("create", "scale", "delete") for v in fake.verbs())


def test_existing_cluster_is_scaled_not_recreated(fake):
    fake.seed("eksml")
    result, deferrals = run(op(action="create", cluster={"train_nodes": "3", "train_max_nodes": "6"}))
    assert deferrals == 0  # scaling is quick: done in the worker
    scale = [a for a in fake.calls() if a[0] == "scale"]
    assert scale == [
        [
            "scale",
            "nodegroup",
            "--cluster",
            "eksml",
            "--region",
            "us-west-2",
            "--name",
            "ng-train",
            "--nodes",
            "3",
            "--nodes-min",
            "0",
            "--nodes-max",
            "6",
        ]
    ]
    assert "create cluster" not in fake.verbs()
    assert result["clusters"][0]["nodegroups"]["ng-train"]["desired"] == 3


def test_missing_node_group_is_added_to_an_existing_cluster(fake):
    fake.seed("eksml", groups={"ng-inference": (1, 1, 3, "m5.2xlarge")})
    result, deferrals = run(op(action="create"))
    assert deferrals == 1 and "create nodegroup" in fake.verbs() and "create cluster" not in fake.verbs()
    assert set(result["clusters"][0]["nodegroups"]) == {"ng-train", "ng-inference"}


def test_failed_create_is_neither_deleted_nor_retried_and_names_the_cleanup(fake, capsys):
    """Issue 22, fault 1: eksctl failing after its stacks were made (its post-create wait refused)
    used to delete the cluster, and the task's retries created it again, billing the node groups
    each cycle. Now the task fails for good with the reason, what exists and the cleanup command."""
    fake.control(fail=["create cluster"])
    with pytest.raises(AirflowFailException) as info:  # AirflowFailException: Airflow never retries it
        run(op(action="create"))
    assert "delete cluster" not in fake.verbs() and fake.verbs().count("create cluster") == 1
    message = str(info.value)
    assert "create cluster eksml failed (exit 1)" in message
    assert "nothing was deleted or re-created" in message
    assert "eksctl delete cluster --name eksml --region us-west-2 --wait" in message
    assert "run action=create again" in message
    logged = capsys.readouterr().out
    assert "signing with" in logged  # the stand-in's line reached the log...
    for text in (message, logged):  # ...with the credentials masked
        assert SECRET_KEY not in text and ACCESS_KEY not in text


def test_resuming_with_the_event_alone_still_fails_without_cleanup(fake):
    fake.control(fail=["create cluster"])
    with pytest.raises(AirflowFailException, match="nothing was deleted"):
        run(op(action="create"), event_only=True)
    assert "delete cluster" not in fake.verbs()


def test_create_after_a_failed_create_resumes_the_cluster_it_left(fake):
    """What a failed create leaves (the project's tag, a missing node group) is completed, not recreated."""
    from eksml.cluster.request import PROJECT_TAG

    fake.seed("eksml", tags={PROJECT_TAG: "eksml"}, groups={"ng-inference": (1, 1, 3, "m5.2xlarge")})
    run(op(action="create"))
    verbs = fake.verbs()
    assert "create cluster" not in verbs and "delete cluster" not in verbs
    assert {"utils associate-iam-oidc-provider", "create iamserviceaccount", "create nodegroup"} <= set(verbs)


def test_cluster_appearing_after_the_decision_is_waited_for_not_recreated(fake):
    """A trigger re-run (triggerer restart) finds the cluster and hands over to the EKS waiter."""
    handed_over = []

    def seed_then_stop(deferred):
        if isinstance(deferred.trigger, EksctlCommandTrigger):
            fake.seed("eksml", status="CREATING")
        else:
            handed_over.append(deferred)
            raise StopIteration

    with pytest.raises(StopIteration):
        run(op(action="create"), on_defer=seed_then_stop)
    assert "create cluster" not in fake.verbs()
    (deferred,) = handed_over
    assert type(deferred.trigger).__name__ == "EksCreateClusterTrigger"
    assert deferred.trigger.serialize()[1]["cluster_name"] == "eksml" and deferred.method_name == "execute_after_wait"


def test_scale_refuses_a_missing_cluster(fake):
    with pytest.raises(AirflowFailException, match="does not exist: run action=create"):
        run(op(action="scale"))
    assert fake.verbs() == ["version", "get cluster"]


def test_delete_existing_and_absent(fake):
    fake.seed("eksml")
    result, deferrals = run(op(action="delete"))
    assert deferrals == 1 and result["deleted"] == ["eksml"] and fake.state() == {}
    result, _ = run(op(action="delete"))
    assert result["deleted"] == [] and fake.verbs().count("delete cluster") == 1


def test_ephemeral_cluster_is_named_and_tagged_after_the_run(fake):
    name = ephemeral_cluster_name("eksml", RUN_ID)
    result, _ = run(op(action="create", cluster_mode="ephemeral", cluster_role="training"))
    assert result["training_cluster"] == name and fake.state()[name]["Tags"][EPHEMERAL_TAG] == run_hash(RUN_ID)
    result, _ = run(op(action="delete", cluster_mode="ephemeral", cluster_role="training"))
    assert result["deleted"] == [name]


def test_ephemeral_delete_refuses_a_cluster_this_run_did_not_create(fake):
    name = ephemeral_cluster_name("eksml", RUN_ID)
    fake.seed(name, tags={EPHEMERAL_TAG: "someone-else"})
    with pytest.raises(AirflowFailException, match="refusing to delete"):
        run(op(action="delete", cluster_mode="ephemeral"))
    assert name in fake.state() and "delete cluster" not in fake.verbs()


def test_existing_mode_never_deletes_the_shared_cluster(fake):
    fake.seed("eksml")
    result, _ = run(op(action="delete", cluster_mode="existing"))
    assert result["action"] == "none" and fake.calls() == []


def test_bad_input_fails_before_any_eksctl_call(fake):
    with pytest.raises(AirflowFailException, match=r"desired \(9\) > max \(4\)"):
        run(op(action="create", cluster={"train_nodes": 9, "train_max_nodes": 4}))
    with pytest.raises(AirflowFailException, match="action must be one of"):
        run(op(action="recreate"))
    assert fake.calls() == []


def test_missing_or_old_eksctl_is_a_clear_error(fake):
    fake.control(version="0.150.0")
    with pytest.raises(AirflowFailException, match=r"eksctl 0\.150\.0 is too old; the pipeline needs >= 0\.202\.0"):
        run(op(action="create"))
    with pytest.raises(AirflowFailException, match="eksctl binary not found"):
        run(op(action="create", eksctl_path="/nonexistent/eksctl"))
    assert fake.verbs() == ["version"]


def test_not_deferrable_runs_the_same_steps_in_the_worker(fake):
    result, deferrals = run(op(action="create", deferrable=False))
    assert deferrals == 0 and "create cluster" in fake.verbs() and result["clusters"][0]["created"] is True


def test_kubeconfig_is_written_on_request(fake, tmp_path):
    fake.seed("eksml")
    path = tmp_path / "kubeconfig"
    run(op(action="create", kubeconfig_path=str(path)))
    assert [
        "utils",
        "write-kubeconfig",
        "--cluster",
        "eksml",
        "--region",
        "us-west-2",
        "--kubeconfig",
        str(path),
    ] in fake.calls()
    assert path.read_text().startswith("apiVersion: v1")


def test_karpenter_resources_are_made_before_the_cluster_and_deleted_with_it(fake, moto_server, monkeypatch):
    """In Karpenter mode the nodes' role must exist before eksctl runs (the cluster's access entry
    names it), and teardown follows a successful delete (eksml.cluster.karpenter_aws)."""
    from fixtures.moto_accounts import fresh_account

    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    account = fresh_account(moto_server, "us-west-2")
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(account.connection()))
    monkeypatch.setenv("EKSML_NODE_SCALER", "karpenter")
    iam, sqs = account.client("iam"), account.client("sqs")
    role = "KarpenterNodeRole-eksml"

    run(op(action="create"))
    (config,) = fake.configs()
    assert {"principalARN": f"arn:aws:iam::{account.id}:role/{role}", "type": "EC2_LINUX"} in config["accessConfig"][
        "accessEntries"
    ]
    assert "KarpenterControllerRole-eksml" in {a["roleName"] for a in config["iam"]["serviceAccounts"]}
    assert iam.get_role(RoleName=role)["Role"]["Arn"] == f"arn:aws:iam::{account.id}:role/{role}"
    assert sqs.get_queue_url(QueueName="eksml")["QueueUrl"]

    result, _ = run(op(action="delete"))
    assert result["deleted"] == ["eksml"]
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_role(RoleName=role)
    assert sqs.list_queues(QueueNamePrefix="eksml").get("QueueUrls", []) == []
