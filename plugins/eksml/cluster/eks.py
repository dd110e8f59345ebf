"""Node groups as the EKS API reports them, compared with what the pipeline expects.

Training pods select ``role=train`` and tolerate the ``nvidia.com/gpu`` taint; if a reused
cluster's node group was created with other labels or taints, the pods would stay
Pending for ever. Reading the EKS API (an independent source from eksctl's view) before
preparing the cluster turns that into an immediate, explicit error.
"""

from __future__ import annotations

from dataclasses import dataclass

from eksml.eksctl.config import ManagedNodeGroup

#: EKS API taint effects -> Kubernetes spelling.
_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}


@dataclass(frozen=True)
class NodegroupInfo:
    name: str
    status: str
    min_size: int
    desired: int
    max_size: int
    instance_types: tuple[str, ...]
    labels: dict[str, str]
    taints: frozenset[tuple[str, str, str]]
    capacity_type: str


def describe_nodegroups(
    cluster_name: str, region: str, aws_conn_id: str | None = "aws_default"
) -> dict[str, NodegroupInfo]:
    """Every managed node group of the cluster (EKS ListNodegroups + DescribeNodegroup)."""
    from airflow.providers.amazon.aws.hooks.eks import EksHook

    hook = EksHook(aws_conn_id=aws_conn_id, region_name=region)
    groups = {}
    for name in hook.list_nodegroups(clusterName=cluster_name):
        ng = hook.describe_nodegroup(clusterName=cluster_name, nodegroupName=name)["nodegroup"]
        scaling = ng.get("scalingConfig", {})
        groups[name] = NodegroupInfo(
            name=name,
            status=ng.get("status", "UNKNOWN"),
            min_size=scaling.get("minSize", 0),
            desired=scaling.get("desiredSize", 0),
            max_size=scaling.get("maxSize", 0),
            instance_types=tuple(ng.get("instanceTypes") or ()),
            labels=dict(ng.get("labels") or {}),
            taints=frozenset(
                (t["key"], t.get("value", ""), _EFFECTS.get(t["effect"], t["effect"])) for t in ng.get("taints") or []
            ),
            capacity_type=ng.get("capacityType", "ON_DEMAND"),
        )
    return groups


def nodegroup_drift(expected: list[ManagedNodeGroup], actual: dict[str, NodegroupInfo]) -> tuple[list[str], list[str]]:
    """(errors, warnings): errors break scheduling (missing group, labels, taints)."""
    errors, warnings = [], []
    for ng in expected:
        have = actual.get(ng.name)
        if have is None:
            errors.append(f"node group {ng.name} is missing (run the eks_cluster DAG with action=create)")
            continue
        for key, value in ng.labels.items():
            if have.labels.get(key) != value:
                errors.append(f"node group {ng.name}: label {key}={have.labels.get(key)!r}, expected {value!r}")
        want_taints = {(t.key, t.value, t.effect) for t in ng.taints}
        if want_taints != set(have.taints):
            errors.append(f"node group {ng.name}: taints {sorted(have.taints)}, expected {sorted(want_taints)}")
        if have.instance_types and not set(have.instance_types) <= set(ng.instance_types):
            warnings.append(
                f"node group {ng.name} runs {list(have.instance_types)}, requested {list(ng.instance_types)}"
            )
        if (have.capacity_type == "SPOT") != ng.spot:
            warnings.append(f"node group {ng.name} capacity is {have.capacity_type}, requested spot={ng.spot}")
    return errors, warnings
