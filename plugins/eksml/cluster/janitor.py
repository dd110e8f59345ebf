"""Stray ephemeral clusters: found by their tags, priced, and handed to the delete tasks.

An ephemeral cluster is deleted by its own run's teardown. When that cannot happen (the run was
marked failed by hand, the scheduler died, the delete itself failed) the cluster, its VPC and
NAT gateway and its OIDC provider keep billing. The ``eks_janitor`` DAG runs this every hour:

* an EKS cluster carrying :data:`~eksml.cluster.lifecycle.EPHEMERAL_TAG` is a stray when the
  run its tags name is no longer running, or when it is older than the age limit;
* a CloudFormation stack carrying the same tag whose cluster is gone (a delete that failed
  half-way: the VPC stack often survives) is a stray too.

Clusters go to ``eksctl delete cluster`` (every stack of the cluster, the OIDC provider); lone
stacks to CloudFormation. Nothing without the tag is ever touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from eksml.cluster.lifecycle import DAG_ID_TAG, EPHEMERAL_TAG, RUN_ID_TAG

#: eksctl tags every stack it makes with the cluster's name.
EKSCTL_CLUSTER_TAG = "alpha.eksctl.io/cluster-name"
#: DAG run states in which the run may still delete its own cluster.
LIVE_RUN_STATES = frozenset({"queued", "running"})
_GONE_STACK_STATES = frozenset({"DELETE_COMPLETE"})

RunState = Callable[[str, str], str | None]


@dataclass(frozen=True)
class Stray:
    """A cluster (``kind="cluster"``) or a stack left without its cluster (``kind="stack"``)."""

    kind: str
    name: str
    region: str
    reason: str
    #: (instance type, running nodes) of a cluster's node groups.
    nodes: tuple[tuple[str, int], ...] = field(default=())


def _tags(value: Any) -> dict[str, str]:
    if isinstance(value, list):  # CloudFormation: [{"Key", "Value"}]
        return {t["Key"]: t["Value"] for t in value}
    return dict(value or {})


def _nodes(eks: Any, cluster: str) -> tuple[tuple[str, int], ...]:
    found = []
    for page in eks.get_paginator("list_nodegroups").paginate(clusterName=cluster):
        for name in page["nodegroups"]:
            group = eks.describe_nodegroup(clusterName=cluster, nodegroupName=name)["nodegroup"]
            types = group.get("instanceTypes") or ["unknown"]
            found.append((types[0], int(group.get("scalingConfig", {}).get("desiredSize", 0))))
    return tuple(found)


def _why_stray(tags: dict[str, str], created: datetime, now: datetime, max_age: timedelta, run_state: RunState) -> str:
    age = now - created
    if age > max_age:
        return f"older than {max_age} (created {created:%Y-%m-%d %H:%M} UTC)"
    dag_id, run_id = tags.get(DAG_ID_TAG), tags.get(RUN_ID_TAG)
    if not (dag_id and run_id):
        return ""  # made before runs were tagged: only the age limit applies
    try:
        state = run_state(dag_id, run_id)
    except Exception as exc:  # a run that cannot be looked up is not known to be running
        state = f"unknown ({type(exc).__name__})"
    if state in LIVE_RUN_STATES:
        return ""
    return f"its run {dag_id}/{run_id} is {state or 'gone'}"


def find_strays(
    eks: Any,
    cloudformation: Any,
    region: str,
    *,
    run_state: RunState,
    now: datetime,
    max_age: timedelta,
) -> list[Stray]:
    """Every stray ephemeral cluster and lone ephemeral stack of ``region``."""
    strays, clusters = [], set()
    for page in eks.get_paginator("list_clusters").paginate():
        for name in page["clusters"]:
            cluster = eks.describe_cluster(name=name)["cluster"]
            tags = _tags(cluster.get("tags"))
            if EPHEMERAL_TAG not in tags:
                continue
            clusters.add(name)
            reason = _why_stray(tags, cluster["createdAt"], now, max_age, run_state)
            if reason:
                strays.append(Stray("cluster", name, region, reason, _nodes(eks, name)))
    for page in cloudformation.get_paginator("describe_stacks").paginate():
        for stack in page["Stacks"]:
            tags = _tags(stack.get("Tags"))
            owner = tags.get(EKSCTL_CLUSTER_TAG)
            if EPHEMERAL_TAG in tags and owner not in clusters and stack["StackStatus"] not in _GONE_STACK_STATES:
                strays.append(Stray("stack", stack["StackName"], region, f"its cluster {owner} is gone"))
    return strays


def stray_cost(strays: list[Stray]) -> tuple[float, list[str]]:
    """Hourly cost of the stray clusters at the dated list prices (``prices.hourly_cost``);
    lone stacks (a VPC's NAT gateway, an EIP) are named, not priced."""
    from eksml.prices import hourly_cost

    total, lines = hourly_cost([(s.name, list(s.nodes)) for s in strays if s.kind == "cluster"])
    lines += [
        f"{s.name}: stack without its cluster (NAT gateway, EIP: not priced here)" for s in strays if s.kind == "stack"
    ]
    return total, lines


def sweep(max_age_hours: float, run_state: RunState, now: datetime, log: Callable[[str], None]) -> dict[str, list]:
    """The janitor task: strays of the settings' region, logged with their running cost, as the
    delete tasks' inputs (clusters for eksctl, lone stacks for CloudFormation). It acts as the
    lifecycle identity, whose policy holds the CloudFormation and EKS calls it makes."""
    from airflow.providers.amazon.aws.hooks.cloud_formation import CloudFormationHook
    from airflow.providers.amazon.aws.hooks.eks import EksHook

    from eksml.settings import resolve_settings

    settings = resolve_settings()
    settings.require_aws("the eks_janitor DAG")
    eks = EksHook(aws_conn_id=settings.lifecycle_connection, region_name=settings.region).conn
    cloudformation = CloudFormationHook(aws_conn_id=settings.lifecycle_connection, region_name=settings.region).conn
    strays = find_strays(
        eks, cloudformation, settings.region, run_state=run_state, now=now, max_age=timedelta(hours=max_age_hours)
    )
    for stray in strays:
        log(f"stray {stray.kind} {stray.name} ({stray.region}): {stray.reason}")
    total, lines = stray_cost(strays)
    for line in lines:
        log(f"  {line}")
    log(f"strays running cost: about ${total:.2f}/h at list prices" if strays else "no stray ephemeral cluster")
    return {
        # one eksctl delete per cluster, never the dedicated topology's pair (the tag names one cluster)
        "clusters": [
            {"name": s.name, "region": s.region, "dedicated_training_cluster": False}
            for s in strays
            if s.kind == "cluster"
        ],
        "stacks": [s.name for s in strays if s.kind == "stack"],
    }


def delete_stack(name: str) -> str:
    """Delete one lone stack (CloudFormation keeps retrying resources it can: a NAT gateway, an EIP)."""
    from airflow.providers.amazon.aws.hooks.cloud_formation import CloudFormationHook

    from eksml.settings import resolve_settings

    settings = resolve_settings()
    CloudFormationHook(aws_conn_id=settings.lifecycle_connection, region_name=settings.region).conn.delete_stack(
        StackName=name
    )
    return name
