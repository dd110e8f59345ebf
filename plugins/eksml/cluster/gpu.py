"""Which nodes can run GPU training right now.

A GPU node is usable only when it is Ready *and* the NVIDIA device plugin has registered
its GPUs (``status.allocatable["nvidia.com/gpu"]``); a node that joined a minute ago
without the plugin running shows zero GPUs and would leave training pods Pending.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GPU_RESOURCE = "nvidia.com/gpu"


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
