"""Karpenter's AWS resources (``eksml.cluster.karpenter_aws``) made and deleted on the moto server,
each in an account of its own (``fixtures.moto_accounts``), and every call the hook made evaluated
against the lifecycle identity's policy and boundary (``fixtures.iam_eval``, conditions included).

moto stores what is asked and answers as AWS does for these calls; it says nothing about whether
EventBridge delivers to the queue or Karpenter reads it."""

from __future__ import annotations

import json

import pytest
from fixtures.iam_eval import Request, evaluate
from fixtures.moto_accounts import fresh_account

from eksml.cluster.karpenter_aws import OWNER_TAG, KarpenterAwsHook, rule_names, template
from eksml.cluster.lifecycle_iam import lifecycle_boundary, lifecycle_policy

REGION = "us-west-2"
CLUSTER = "eksml-karp"
TAGS = {"eksml/project": "eksml", "karpenter.sh/discovery": CLUSTER}
NODE_POLICIES = {
    f"arn:aws:iam::aws:policy/{name}"
    for name in (
        "AmazonEKS_CNI_Policy",
        "AmazonEKSWorkerNodePolicy",
        "AmazonEC2ContainerRegistryPullOnly",
        "AmazonSSMManagedInstanceCore",
    )
}


@pytest.fixture
def account(moto_server, monkeypatch):
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    return fresh_account(moto_server, REGION)


@pytest.fixture
def calls() -> list[tuple[str, str, dict]]:
    return []


@pytest.fixture
def hook(account, calls) -> KarpenterAwsHook:
    record = lambda service, operation, params: calls.append((service, operation, dict(params)))  # noqa: E731
    return KarpenterAwsHook(
        None,
        REGION,
        iam=account.client("iam", record),
        sqs=account.client("sqs", record),
        events=account.client("events", record),
        ec2=account.client("ec2", record),
    )


def _karpenter_node(account, cluster: str) -> str:
    """An instance tagged as Karpenter tags its nodes, and its launch template, for ``cluster``."""
    ec2 = account.client("ec2")
    ec2.create_launch_template(
        LaunchTemplateName=f"karpenter.k8s.aws/{cluster}-1",
        LaunchTemplateData={"InstanceType": "g5.xlarge"},
        TagSpecifications=[
            {"ResourceType": "launch-template", "Tags": [{"Key": "karpenter.k8s.aws/cluster", "Value": cluster}]}
        ],
    )
    tags = [
        {"Key": f"kubernetes.io/cluster/{cluster}", "Value": "owned"},
        {"Key": "karpenter.sh/nodepool", "Value": "gpu-train"},
    ]
    (instance,) = ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        InstanceType="g5.xlarge",
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"]
    return instance["InstanceId"]


def _state(account, instance: str) -> str:
    (reservation,) = account.client("ec2").describe_instances(InstanceIds=[instance])["Reservations"]
    return reservation["Instances"][0]["State"]["Name"]


def test_the_nodes_role_queue_and_rules_are_made_once(account, hook):
    first = hook.ensure(CLUSTER, TAGS)
    assert hook.ensure(CLUSTER, TAGS) == first  # a second run finds everything and changes nothing
    queue_arn = f"arn:aws:sqs:{REGION}:{account.id}:{CLUSTER}"
    assert first["node_role"] == f"arn:aws:iam::{account.id}:role/KarpenterNodeRole-{CLUSTER}"
    assert first["interruption_queue"] == queue_arn

    iam = account.client("iam")
    role = iam.get_role(RoleName=f"KarpenterNodeRole-{CLUSTER}")["Role"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "ec2.amazonaws.com"} and trust["Action"] == ["sts:AssumeRole"]
    assert {t["Key"]: t["Value"] for t in role["Tags"]} == {**TAGS, OWNER_TAG: CLUSTER}
    attached = iam.list_attached_role_policies(RoleName=role["RoleName"])["AttachedPolicies"]
    assert {p["PolicyArn"] for p in attached} == NODE_POLICIES and len(attached) == 4

    sqs = account.client("sqs")
    url = sqs.get_queue_url(QueueName=CLUSTER)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["MessageRetentionPeriod"] == "300" and attributes["SqsManagedSseEnabled"] == "true"
    allow, deny_http = json.loads(attributes["Policy"])["Statement"]
    assert allow["Action"] == "sqs:SendMessage" and allow["Resource"] == queue_arn
    assert set(allow["Principal"]["Service"]) == {"events.amazonaws.com", "sqs.amazonaws.com"}
    assert deny_http["Effect"] == "Deny" and deny_http["Condition"] == {"Bool": {"aws:SecureTransport": False}}
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"][OWNER_TAG] == CLUSTER

    events = account.client("events")
    rules = events.list_rules(NamePrefix=f"Karpenter-{CLUSTER}-")["Rules"]
    patterns = {json.dumps(p, sort_keys=True) for p in template()["InterruptionRules"].values()}
    assert {json.dumps(json.loads(r["EventPattern"]), sort_keys=True) for r in rules} == patterns
    detail_types = {t for r in rules for t in json.loads(r["EventPattern"])["detail-type"]}
    assert {
        "EC2 Spot Instance Interruption Warning",
        "EC2 Instance Rebalance Recommendation",
        "EC2 Instance State-change Notification",
        "AWS Health Event",
    } <= detail_types
    for rule in rules:
        assert rule["State"] == "ENABLED"
        targets = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
        assert [(t["Id"], t["Arn"]) for t in targets] == [("KarpenterInterruptionQueueTarget", queue_arn)]


def test_teardown_deletes_what_was_made_and_karpenters_own_instance_profiles(account, hook):
    hook.ensure(CLUSTER, TAGS)
    iam = account.client("iam")
    role = f"KarpenterNodeRole-{CLUSTER}"
    # what Karpenter makes from the EC2NodeClass's spec.role, and one made by hand
    owned = {"Key": f"kubernetes.io/cluster/{CLUSTER}", "Value": "owned"}
    iam.create_instance_profile(InstanceProfileName=f"{CLUSTER}_1234567890", Tags=[owned])
    iam.create_instance_profile(InstanceProfileName="by-hand")
    for profile in (f"{CLUSTER}_1234567890", "by-hand"):
        iam.add_role_to_instance_profile(InstanceProfileName=profile, RoleName=role)

    deleted = hook.delete(CLUSTER)
    assert sorted(deleted) == sorted(
        [
            *(f"EventBridge rule {name}" for name in rule_names(CLUSTER).values()),
            f"SQS queue {CLUSTER}",
            f"IAM instance profile {CLUSTER}_1234567890",
            f"IAM role {role}",
        ]
    )
    assert hook.delete(CLUSTER) == []  # nothing left: a second teardown is a no-op
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_role(RoleName=role)
    assert iam.get_instance_profile(InstanceProfileName="by-hand")["InstanceProfile"]["Roles"] == []
    assert account.client("events").list_rules(NamePrefix=f"Karpenter-{CLUSTER}-")["Rules"] == []
    assert account.client("sqs").list_queues(QueueNamePrefix=CLUSTER).get("QueueUrls", []) == []


def test_spot_needs_ec2_spots_service_linked_role_which_is_made_once_and_kept(account, hook):
    iam = account.client("iam")

    def spot_roles() -> list[str]:  # moto names it AWSServiceRoleForspot, IAM AWSServiceRoleForEC2Spot
        return [r["Path"] for r in iam.list_roles(PathPrefix="/aws-service-role/spot.amazonaws.com/")["Roles"]]

    hook.ensure(CLUSTER, TAGS)
    assert spot_roles() == []
    hook.ensure(CLUSTER, TAGS, spot=True)
    hook.ensure(CLUSTER, TAGS, spot=True)  # there already: not made twice
    assert spot_roles() == ["/aws-service-role/spot.amazonaws.com/"]
    hook.delete(CLUSTER)
    assert len(spot_roles()) == 1  # the account's, kept


def test_karpenters_nodes_are_terminated_before_the_cluster_goes_and_its_launch_templates_after(account, hook):
    mine, other = _karpenter_node(account, CLUSTER), _karpenter_node(account, "other")
    assert hook.terminate_nodes(CLUSTER, wait_delay=1) == [mine]
    assert _state(account, mine) == "terminated" and _state(account, other) == "running"
    assert hook.terminate_nodes(CLUSTER, wait_delay=1) == []
    assert hook.delete(CLUSTER) == [f"EC2 launch template karpenter.k8s.aws/{CLUSTER}-1"]
    left = account.client("ec2").describe_launch_templates()["LaunchTemplates"]
    assert [t["LaunchTemplateName"] for t in left] == ["karpenter.k8s.aws/other-1"]


def test_a_role_and_queue_made_by_hand_are_used_but_never_deleted(account, hook):
    iam, sqs = account.client("iam"), account.client("sqs")
    role = f"KarpenterNodeRole-{CLUSTER}"
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    sqs.create_queue(QueueName=CLUSTER)
    made = hook.ensure(CLUSTER, TAGS)
    assert made["node_role"].endswith(f":role/{role}")
    assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []  # left as it was
    hook.delete(CLUSTER)
    assert iam.get_role(RoleName=role)["Role"]["RoleName"] == role
    assert sqs.get_queue_url(QueueName=CLUSTER)["QueueUrl"]


#: The IAM action each call is authorized as (Service Authorization Reference), beyond the one
#: named like the operation: tagging at creation needs the tag action too.
_ALSO = {
    ("iam", "CreateRole"): ("iam:TagRole", "Tags"),
    ("sqs", "CreateQueue"): ("sqs:TagQueue", "tags"),
    ("events", "PutRule"): ("events:TagResource", "Tags"),
}


def _authorizations(account: str, service: str, operation: str, params: dict) -> list[Request]:
    prefix = service
    if service == "ec2":
        ids = params.get("InstanceIds")
        resource = f"arn:aws:ec2:{REGION}:{account}:instance/{ids[0]}" if operation == "TerminateInstances" else "*"
        return [Request(f"ec2:{operation}", resource, {"aws:RequestedRegion": REGION})]
    if (service, operation) == ("iam", "CreateServiceLinkedRole"):
        context = {"aws:RequestedRegion": "us-east-1", "iam:AWSServiceName": params["AWSServiceName"]}
        return [Request("iam:CreateServiceLinkedRole", f"arn:aws:iam::{account}:role/aws-service-role/*", context)]
    if service == "iam":
        if "InstanceProfileName" in params:
            resource = f"arn:aws:iam::{account}:instance-profile/{params['InstanceProfileName']}"
        else:
            resource = f"arn:aws:iam::{account}:role/{params['RoleName']}"
        context = {"aws:RequestedRegion": "us-east-1"}
        if "PolicyArn" in params:
            context["iam:PolicyARN"] = params["PolicyArn"]
    elif service == "sqs":
        name = params.get("QueueName") or params["QueueUrl"].rsplit("/", 1)[1]
        resource, context = f"arn:aws:sqs:{REGION}:{account}:{name}", {"aws:RequestedRegion": REGION}
    else:
        name = params.get("Name") or params["Rule"]
        resource, context = f"arn:aws:events:{REGION}:{account}:rule/{name}", {"aws:RequestedRegion": REGION}
    requests = [Request(f"{prefix}:{operation}", resource, context)]
    also = _ALSO.get((service, operation))
    if also and params.get(also[1]):
        requests.append(Request(also[0], resource, context))
    return requests


@pytest.mark.parametrize("cluster", [CLUSTER, f"{CLUSTER}-run-0123456789"], ids=["shared", "ephemeral"])
def test_every_call_the_hook_makes_is_allowed_to_the_lifecycle_identity(account, hook, calls, cluster):
    iam = account.client("iam")
    hook.ensure(cluster, TAGS, spot=True)
    _karpenter_node(account, cluster)
    hook.terminate_nodes(cluster, wait_delay=1)
    iam.create_instance_profile(
        InstanceProfileName=f"{cluster}_1", Tags=[{"Key": f"kubernetes.io/cluster/{cluster}", "Value": "owned"}]
    )
    iam.add_role_to_instance_profile(InstanceProfileName=f"{cluster}_1", RoleName=f"KarpenterNodeRole-{cluster}")
    hook.delete(cluster)
    services = ("training", "inference")
    policy = lifecycle_policy(CLUSTER, REGION, service_accounts=services, account_id=account.id)
    boundary = lifecycle_boundary(CLUSTER, REGION, service_accounts=services, account_id=account.id)
    requests = [r for service, op, params in calls for r in _authorizations(account.id, service, op, params)]
    assert {r.action for r in requests} >= {
        "iam:CreateRole",
        "iam:AttachRolePolicy",
        "sqs:CreateQueue",
        "sqs:SetQueueAttributes",
        "events:PutRule",
        "events:PutTargets",
        "iam:DeleteInstanceProfile",
        "iam:DeleteRole",
        "sqs:DeleteQueue",
        "events:DeleteRule",
        "ec2:TerminateInstances",
        "iam:CreateServiceLinkedRole",
        "ec2:DeleteLaunchTemplate",
    }
    refused = [f"{r}: {d.decision}" for r in requests if not (d := evaluate([policy], r, boundary=boundary)).allowed]
    assert refused == []
    # and no write outside the project's names: the same writes for another cluster are refused
    other = [
        Request(r.action, r.resource.replace(cluster, "other"), r.context)
        for r in requests
        if cluster in r.resource and not r.action.split(":")[1].startswith(("Get", "List"))
    ]
    assert other and not [r for r in other if evaluate([policy], r, boundary=boundary).allowed]
