"""Server-side apply of plain-dict objects through a Kubernetes API client.

Hand-written because the cncf-kubernetes provider only *creates* from YAML
(``KubernetesHook.apply_from_yaml_file`` -> ``create_from_yaml``), which fails with 409 on
a reused cluster; server-side apply is idempotent, and it is what the MPI operator's
manifest needs (its CRD is too large for client-side apply's annotation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eksml.cluster.addons import apply_order

FIELD_MANAGER = "eksml"


def object_ref(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj['kind']}/{where}{meta['name']}"


def apply_objects(
    api_client: Any,
    objects: list[dict[str, Any]],
    *,
    log: Callable[[str], None] = print,
    field_manager: str = FIELD_MANAGER,
) -> list[str]:
    """Apply ``objects`` in dependency order; return their references. Stops at the first error."""
    from kubernetes.dynamic import DynamicClient

    dynamic = DynamicClient(api_client)
    applied = []
    for obj in apply_order(objects):
        resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        namespace = obj["metadata"].get("namespace") if resource.namespaced else None
        if resource.namespaced and not namespace:
            namespace = "default"
        dynamic.server_side_apply(
            resource,
            body=obj,
            name=obj["metadata"]["name"],
            namespace=namespace,
            field_manager=field_manager,
            force_conflicts=True,
        )
        applied.append(object_ref(obj))
        log(f"applied {object_ref(obj)}")
    return applied
