"""Which nodes can run GPU training right now.

A GPU node is usable only when it is Ready *and* the NVIDIA device plugin has registered
its GPUs (``status.allocatable["nvidia.com/gpu"]``); a node that joined a minute ago
without the plugin running shows zero GPUs and would leave training pods Pending.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eksml.nodes import GPU_RESOURCE


@dataclass(frozen=True)
class GpuNode:
    name: str
    ready: bool
    gpus: int


def _get(obj: Any, snake: str, camel: str | None = None) -> Any:
    """Read a field from a kubernetes-client model or from a plain dict (API JSON)."""
    if isinstance(obj, dict):
        return obj.get(camel or snake)
    return getattr(obj, snake, None)


def gpu_node(node: Any) -> GpuNode:
    meta, status = _get(node, "metadata"), _get(node, "status")
    conditions = _get(status, "conditions") or []
    ready = any(_get(c, "type") == "Ready" and _get(c, "status") == "True" for c in conditions)
    allocatable = _get(status, "allocatable") or {}
    return GpuNode(name=_get(meta, "name"), ready=ready, gpus=int(allocatable.get(GPU_RESOURCE, 0) or 0))


def usable_gpu_nodes(nodes: list[Any], gpus_per_node: int = 1) -> list[GpuNode]:
    """Ready nodes that advertise at least ``gpus_per_node`` GPUs."""
    return [n for n in map(gpu_node, nodes) if n.ready and n.gpus >= gpus_per_node]


def autoscaler_available(api_client: Any) -> bool:
    """Whether the cluster autoscaler Deployment exists with at least one available replica."""
    from kubernetes.client import AppsV1Api
    from kubernetes.client.exceptions import ApiException

    from eksml.cluster.autoscaler import NAME, NAMESPACE

    try:
        deployment = AppsV1Api(api_client).read_namespaced_deployment(NAME, NAMESPACE)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return bool(deployment.status and (deployment.status.available_replicas or 0) >= 1)


def unschedulable_reason(pod: Any) -> str | None:
    """The scheduler's message when ``pod`` is Pending because no node can take it, else None."""
    status = _get(pod, "status")
    if _get(status, "phase") != "Pending":
        return None
    for cond in _get(status, "conditions") or []:
        if _get(cond, "type") == "PodScheduled" and _get(cond, "status") == "False":
            return _get(cond, "message") or _get(cond, "reason") or "unschedulable"
    return None


def describe_gpu_group(
    cluster_name: str,
    region: str,
    aws_conn_id: str | None,
    group_name: str,
    instance_types: tuple[str, ...],
    spot: bool,
) -> tuple[Any, str, str]:
    """(the node group as EKS reports it or None, "node group ... (min, desired, max)", quota hint)."""
    from eksml.cluster.eks import describe_nodegroups
    from eksml.eksctl.instance_types import ec2_quota_for

    group = describe_nodegroups(cluster_name, region, aws_conn_id).get(group_name)
    instance = (group.instance_types if group and group.instance_types else instance_types)[0]
    code, quota = ec2_quota_for(instance, spot=spot)
    where = f"node group {group_name} of cluster {cluster_name}" + (
        f" (min {group.min_size}, desired {group.desired}, max {group.max_size})" if group else ""
    )
    return group, where, f"EC2 quota {code} '{quota}' in {region} must cover the vCPUs of the {instance} nodes"
