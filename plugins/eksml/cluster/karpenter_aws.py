"""Karpenter's AWS side, made by the pipeline: the controller's IAM role, the nodes' IAM role and
cluster access, and the interruption queue with its EventBridge rules.

All of it comes from Karpenter's getting-started CloudFormation template, vendored with a checksum
(``include/kubernetes/karpenter/getting-started-resources.json``, see its kustomization), its
``${...}`` references filled in per cluster here:

* the controller's role is an IRSA role eksctl makes with the cluster (``iam.serviceAccounts``,
  kube-system/karpenter), holding the statements of the template's controller policies, and
  deleted with the cluster by eksctl;
* the nodes' role (``KarpenterNodeRole-<cluster>``, the template's trust and managed policies)
  is made by :class:`KarpenterAwsHook` before eksctl runs, since the cluster's EC2_LINUX access
  entry (``accessConfig.accessEntries``) names it; Karpenter makes the nodes' instance profiles
  itself from the EC2NodeClass's ``spec.role`` (the template makes none);
* the interruption queue ``<cluster>`` (the template's attributes and policy) and one
  EventBridge rule per event type of the template, sending to it, made by the same hook; the
  controller reads the queue's name from ``settings.interruptionQueue``.

The hook's resources carry :data:`OWNER_TAG` (the cluster's name): teardown deletes only what
carries it, so a role or queue made by hand as the guide says is used but never deleted. Before
the cluster is deleted the hook terminates the nodes Karpenter launched for it, and after, with
the role, the instance profiles and launch templates Karpenter made for it (tagged so by Karpenter).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from functools import cached_property
from typing import Any

from eksml.cluster.addons import KARPENTER, pinned_file
from eksml.cluster.config import AccessEntry, IAMServiceAccount
from eksml.cluster.iam import POLICY_VERSION, partition_for

log = logging.getLogger(__name__)

RESOURCES = "getting-started-resources.json"
#: The controller's service account (the chart's release name and namespace).
CONTROLLER_SERVICE_ACCOUNT = ("kube-system", "karpenter")
#: Tag of everything :class:`KarpenterAwsHook` makes: the cluster it was made for.
OWNER_TAG = "eksml/karpenter-cluster"
#: EC2 Spot's service-linked role, which spot launches need.
SPOT_SERVICE_ROLE = "AWSServiceRoleForEC2Spot"
#: The queue target's id, as in the template.
TARGET_ID = "KarpenterInterruptionQueueTarget"
#: Short names of the template's rules (an EventBridge rule name has at most 64 characters).
RULE_NAMES = {
    "ScheduledChangeRule": "scheduled-change",
    "SpotInterruptionRule": "spot-interruption",
    "RebalanceRule": "rebalance",
    "InstanceStateChangeRule": "state-change",
    "CapacityReservationInterruptionRule": "capacity-reservation",
}
_REFERENCE = re.compile(r"\$\{([A-Za-z:.]+)\}")
_RULE_NAME = re.compile(r"^[.\-_A-Za-z0-9]{1,64}$")
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


def node_role_name(cluster: str) -> str:
    """The IAM role of Karpenter's nodes (the getting-started template's name)."""
    return f"KarpenterNodeRole-{cluster}"


def controller_role_name(cluster: str) -> str:
    """The IAM role of Karpenter's controller, through IRSA."""
    return f"KarpenterControllerRole-{cluster}"


def interruption_queue_name(cluster: str) -> str:
    """The SQS queue of interruption events (the template names it after the cluster)."""
    return cluster


def rule_prefix(cluster: str) -> str:
    """What the names of ``cluster``'s EventBridge rules start with."""
    return f"Karpenter-{cluster}-"


def rule_names(cluster: str) -> dict[str, str]:
    """The template's rule (its resource name) -> the EventBridge rule made for ``cluster``."""
    return {key: rule_prefix(cluster) + RULE_NAMES.get(key, key) for key in template()["InterruptionRules"]}


def name_problems(cluster: str) -> list[str]:
    """What keeps ``cluster``'s Karpenter resources from being named within AWS's limits."""
    problems = [
        f"Karpenter's EventBridge rule {name!r} exceeds 64 characters: shorten the cluster name"
        for name in rule_names(cluster).values()
        if not _RULE_NAME.match(name)
    ]
    if not _QUEUE_NAME.match(interruption_queue_name(cluster)):
        problems.append(f"Karpenter's interruption queue {cluster!r} exceeds SQS's 80 characters")
    return problems


def template() -> dict[str, Any]:
    """The vendored parts of the getting-started template, checksum verified."""
    return json.loads(pinned_file(KARPENTER, RESOURCES).read_text())


def fill(value: Any, references: Mapping[str, str]) -> Any:
    """``value`` with every CloudFormation ``${...}`` reference (in keys too) replaced; an
    unknown one is refused rather than sent to IAM as text."""

    def text(s: str) -> str:
        missing = sorted({r for r in _REFERENCE.findall(s) if r not in references})
        if missing:
            raise ValueError(f"{RESOURCES}: no value for {', '.join(missing)}")
        return _REFERENCE.sub(lambda m: references[m.group(1)], s)

    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return {text(k): fill(v, references) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, references) for v in value]
    return value


def references(cluster: str, region: str, account_id: str) -> dict[str, str]:
    """The template's references for ``cluster`` (``account_id`` may be ``*``: offline rendering)."""
    partition = partition_for(region)
    return {
        "AWS::Partition": partition,
        "AWS::Region": region,
        "AWS::AccountId": account_id,
        "AWS::URLSuffix": "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com",
        "ClusterName": cluster,
        "KarpenterNodeRole.Arn": f"arn:{partition}:iam::{account_id}:role/{node_role_name(cluster)}",
        "KarpenterInterruptionQueue.Arn": (
            f"arn:{partition}:sqs:{region}:{account_id}:{interruption_queue_name(cluster)}"
        ),
    }


def controller_policy(cluster: str, region: str, account_id: str) -> dict[str, Any]:
    """The statements of the template's controller policies, filled in, as one document."""
    policies = fill(template()["ControllerPolicies"], references(cluster, region, account_id))
    statements = [s for doc in policies.values() for s in doc["Statement"]]
    sids = [s["Sid"] for s in statements if "Sid" in s]
    if len(set(sids)) != len(sids):
        raise ValueError(f"{RESOURCES}: the controller policies repeat a Sid: {sorted(sids)}")
    return {"Version": POLICY_VERSION, "Statement": statements}


def controller_service_account(cluster: str, region: str, account_id: str) -> IAMServiceAccount:
    """The controller's IRSA role, made by eksctl with the cluster."""
    namespace, name = CONTROLLER_SERVICE_ACCOUNT
    return IAMServiceAccount(
        name=name,
        namespace=namespace,
        role_name=controller_role_name(cluster),
        policy=controller_policy(cluster, region, account_id),
    )


def node_access_entry(cluster: str, region: str, account_id: str) -> AccessEntry:
    """The nodes' role joining the cluster as EC2 Linux nodes (EKS maps it to system:nodes)."""
    return AccessEntry(principal_arn=references(cluster, region, account_id)["KarpenterNodeRole.Arn"], type="EC2_LINUX")


def _tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


class KarpenterAwsHook:
    """Makes and deletes a cluster's Karpenter resources: the nodes' role, the interruption queue
    and its rules. Both are idempotent (a second run changes nothing, a missing resource is
    skipped) and act as the lifecycle identity, whose policy scopes them to the project's names
    (``eksml.cluster.lifecycle_iam``). Clients come from the amazon provider's hooks; tests may
    pass their own."""

    def __init__(
        self,
        aws_conn_id: str | None,
        region: str,
        *,
        iam: Any = None,
        sqs: Any = None,
        events: Any = None,
        ec2: Any = None,
    ) -> None:
        self.aws_conn_id = aws_conn_id
        self.region = region
        for name, client in (("iam", iam), ("sqs", sqs), ("events", events), ("ec2", ec2)):
            if client is not None:
                self.__dict__[name] = client

    @cached_property
    def ec2(self) -> Any:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        return AwsBaseHook(aws_conn_id=self.aws_conn_id, region_name=self.region, client_type="ec2").conn

    @cached_property
    def iam(self) -> Any:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        return AwsBaseHook(aws_conn_id=self.aws_conn_id, region_name=self.region, client_type="iam").conn

    @cached_property
    def sqs(self) -> Any:
        from airflow.providers.amazon.aws.hooks.sqs import SqsHook

        return SqsHook(aws_conn_id=self.aws_conn_id, region_name=self.region).conn

    @cached_property
    def events(self) -> Any:
        from airflow.providers.amazon.aws.hooks.eventbridge import EventBridgeHook

        return EventBridgeHook(aws_conn_id=self.aws_conn_id, region_name=self.region).conn

    # --- create ---------------------------------------------------------------------------
    def ensure(self, cluster: str, tags: Mapping[str, str], *, spot: bool = False) -> dict[str, Any]:
        """The nodes' role, the queue and the rules of ``cluster``, made where missing; returns
        their names and ARNs. With ``spot``, also EC2 Spot's service-linked role, which the
        controller's policy cannot make and spot launches need (the guide's step 6)."""
        owned = {**tags, OWNER_TAG: cluster}
        spec = template()
        if spot:
            self._ensure_spot_role()
        role_arn = self._ensure_node_role(cluster, spec["NodeRole"], owned)
        queue_arn = self._ensure_queue(cluster, spec, owned)
        rules = self._ensure_rules(cluster, spec["InterruptionRules"], queue_arn, owned)
        return {"node_role": role_arn, "interruption_queue": queue_arn, "rules": rules}

    def _ensure_spot_role(self) -> None:
        """The account's EC2 Spot service-linked role (one per account: kept at teardown)."""
        try:
            self.iam.get_role(RoleName=SPOT_SERVICE_ROLE)
            return
        except self.iam.exceptions.NoSuchEntityException:
            pass
        try:
            self.iam.create_service_linked_role(AWSServiceName="spot.amazonaws.com")
        except (self.iam.exceptions.InvalidInputException, self.iam.exceptions.EntityAlreadyExistsException) as exc:
            # IAM answers InvalidInput "... has been taken in this account" when it exists already
            if "taken" not in str(exc) and "already exists" not in str(exc):
                raise
            return
        log.info("created the service-linked role %s", SPOT_SERVICE_ROLE)

    def _ensure_node_role(self, cluster: str, spec: dict[str, Any], tags: Mapping[str, str]) -> str:
        role = fill(spec, references(cluster, self.region, "*"))
        name = role["RoleName"]
        try:
            found = self.iam.get_role(RoleName=name)["Role"]
        except self.iam.exceptions.NoSuchEntityException:
            found = self.iam.create_role(
                RoleName=name,
                Path=role["Path"],
                AssumeRolePolicyDocument=json.dumps(role["AssumeRolePolicyDocument"]),
                Description=f"Karpenter's nodes of EKS cluster {cluster}",
                Tags=_tag_list(tags),
            )["Role"]
            log.info("created IAM role %s", name)
        if _owner(found.get("Tags")) != cluster:
            log.info("IAM role %s was not made by the pipeline: used as it is", name)
            return found["Arn"]
        attached = {
            p["PolicyArn"]
            for page in self.iam.get_paginator("list_attached_role_policies").paginate(RoleName=name)
            for p in page["AttachedPolicies"]
        }
        for arn in role["ManagedPolicyArns"]:
            if arn not in attached:
                self.iam.attach_role_policy(RoleName=name, PolicyArn=arn)
        return found["Arn"]

    def _ensure_queue(self, cluster: str, spec: dict[str, Any], tags: Mapping[str, str]) -> str:
        name = interruption_queue_name(cluster)
        try:
            url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except self.sqs.exceptions.QueueDoesNotExist:
            attributes = {
                k: str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in spec["InterruptionQueue"].items()
                if k != "QueueName"
            }
            url = self.sqs.create_queue(QueueName=name, Attributes=attributes, tags=dict(tags))["QueueUrl"]
            log.info("created SQS queue %s", name)
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        if self.sqs.list_queue_tags(QueueUrl=url).get("Tags", {}).get(OWNER_TAG) != cluster:
            log.info("SQS queue %s was not made by the pipeline: used as it is", name)
            return arn
        policy = fill(spec["InterruptionQueuePolicy"], {"KarpenterInterruptionQueue.Arn": arn})
        self.sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
        return arn

    def _ensure_rules(
        self, cluster: str, patterns: Mapping[str, Any], queue_arn: str, tags: Mapping[str, str]
    ) -> list[str]:
        names = rule_names(cluster)
        for key, pattern in patterns.items():
            # PutRule and PutTargets create or update: a second run leaves the same rule and target.
            self.events.put_rule(
                Name=names[key],
                EventPattern=json.dumps(pattern),
                State="ENABLED",
                Description=f"Karpenter interruption events of EKS cluster {cluster} ({key})",
                Tags=_tag_list(tags),
            )
            self.events.put_targets(Rule=names[key], Targets=[{"Id": TARGET_ID, "Arn": queue_arn}])
        return list(names.values())

    # --- delete ---------------------------------------------------------------------------
    def terminate_nodes(self, cluster: str, *, wait_delay: int = 15, wait_attempts: int = 40) -> list[str]:
        """Terminate the instances Karpenter launched for ``cluster`` and wait until they are gone;
        returns their ids. Run before the cluster is deleted: eksctl deletes node groups, not
        Karpenter's nodes, whose network interfaces would keep the VPC from being deleted."""
        filters = [
            {"Name": f"tag:kubernetes.io/cluster/{cluster}", "Values": ["owned"]},
            {"Name": "tag-key", "Values": ["karpenter.sh/nodepool"]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
        ids = [
            instance["InstanceId"]
            for page in self.ec2.get_paginator("describe_instances").paginate(Filters=filters)
            for reservation in page["Reservations"]
            for instance in reservation["Instances"]
        ]
        if ids:
            log.info("terminating %d node(s) Karpenter launched for %s: %s", len(ids), cluster, ", ".join(ids))
            self.ec2.terminate_instances(InstanceIds=ids)
            self.ec2.get_waiter("instance_terminated").wait(
                InstanceIds=ids, WaiterConfig={"Delay": wait_delay, "MaxAttempts": wait_attempts}
            )
        return ids

    def delete(self, cluster: str) -> list[str]:
        """Delete ``cluster``'s rules, and its queue and nodes' role where the pipeline made them;
        returns what was deleted. Run once the cluster is gone: no node uses the role then."""
        deleted = self._delete_rules(cluster)
        deleted += self._delete_queue(cluster)
        deleted += self._delete_node_role(cluster)
        deleted += self._delete_launch_templates(cluster)
        return deleted

    def _delete_launch_templates(self, cluster: str) -> list[str]:
        """The launch templates Karpenter made for ``cluster`` (the guide's clean-up step)."""
        filters = [{"Name": "tag:karpenter.k8s.aws/cluster", "Values": [cluster]}]
        names = [
            t["LaunchTemplateName"]
            for page in self.ec2.get_paginator("describe_launch_templates").paginate(Filters=filters)
            for t in page["LaunchTemplates"]
        ]
        for name in names:
            self.ec2.delete_launch_template(LaunchTemplateName=name)
        return [f"EC2 launch template {name}" for name in names]

    def _delete_rules(self, cluster: str) -> list[str]:
        deleted = []
        for name in rule_names(cluster).values():
            try:
                targets = [
                    t["Id"]
                    for page in self.events.get_paginator("list_targets_by_rule").paginate(Rule=name)
                    for t in page["Targets"]
                ]
            except self.events.exceptions.ResourceNotFoundException:
                continue
            if targets:
                self.events.remove_targets(Rule=name, Ids=targets)
            self.events.delete_rule(Name=name)
            deleted.append(f"EventBridge rule {name}")
        return deleted

    def _delete_queue(self, cluster: str) -> list[str]:
        name = interruption_queue_name(cluster)
        try:
            url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except self.sqs.exceptions.QueueDoesNotExist:
            return []
        if self.sqs.list_queue_tags(QueueUrl=url).get("Tags", {}).get(OWNER_TAG) != cluster:
            log.info("SQS queue %s was not made by the pipeline: kept", name)
            return []
        self.sqs.delete_queue(QueueUrl=url)
        return [f"SQS queue {name}"]

    def _delete_node_role(self, cluster: str) -> list[str]:
        name = node_role_name(cluster)
        try:
            role = self.iam.get_role(RoleName=name)["Role"]
        except self.iam.exceptions.NoSuchEntityException:
            return []
        if _owner(role.get("Tags")) != cluster:
            log.info("IAM role %s was not made by the pipeline: kept", name)
            return []
        deleted = []
        # Karpenter's own instance profiles (tagged for the cluster) go; others only lose the role.
        for page in self.iam.get_paginator("list_instance_profiles_for_role").paginate(RoleName=name):
            for profile in page["InstanceProfiles"]:
                profile_name = profile["InstanceProfileName"]
                self.iam.remove_role_from_instance_profile(InstanceProfileName=profile_name, RoleName=name)
                tags = self.iam.get_instance_profile(InstanceProfileName=profile_name)["InstanceProfile"].get("Tags")
                if {t["Key"]: t["Value"] for t in tags or []}.get(f"kubernetes.io/cluster/{cluster}") == "owned":
                    self.iam.delete_instance_profile(InstanceProfileName=profile_name)
                    deleted.append(f"IAM instance profile {profile_name}")
        for page in self.iam.get_paginator("list_attached_role_policies").paginate(RoleName=name):
            for policy in page["AttachedPolicies"]:
                self.iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
        self.iam.delete_role(RoleName=name)
        return [*deleted, f"IAM role {name}"]


def _owner(tags: list[dict[str, str]] | None) -> str | None:
    return {t["Key"]: t["Value"] for t in tags or []}.get(OWNER_TAG)
