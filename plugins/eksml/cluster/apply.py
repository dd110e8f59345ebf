"""Server-side apply (``kubectl apply --server-side``) of plain-dict manifests: how the cluster's
add-ons and the project's own objects are installed (:mod:`eksml.cluster.operators`), and what
the serving rollout's ``DeploymentHook`` (:mod:`eksml.kubernetes.hooks`) builds on.

It lives with the cluster so that the cluster package needs nothing of ``eksml.kubernetes``;
the workload side imports it from here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cached_property
from typing import Any

from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

#: Our name as the writer of every object the pipeline applies (cluster objects and serving).
FIELD_MANAGER = "eksml"
#: Objects that others depend on go first (a namespaced object needs its Namespace).
_KIND_ORDER = {"CustomResourceDefinition": 0, "Namespace": 1, "ServiceAccount": 2, "ClusterRole": 3, "Role": 3}


def apply_order(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stable sort: CRDs, Namespaces, identities and roles before what uses them."""
    return sorted(objects, key=lambda o: _KIND_ORDER.get(o["kind"], 9))


def object_ref(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj['kind']}/{where}{meta['name']}"


def _resource_of(dynamic: Any, obj: dict[str, Any], attempts: int = 30, pause: float = 1.0) -> Any:
    """The API resource of ``obj``; a kind whose CRD was applied moments ago (same apply) is
    served once the CRD is established, so discovery is refreshed and asked again for a while."""
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    for attempt in range(attempts):
        try:
            return dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        except ResourceNotFoundError:
            if attempt == attempts - 1:
                raise
            time.sleep(pause)
            dynamic.resources.invalidate_cache()
    raise AssertionError("unreachable")


def _server_side_apply(
    dynamic: Any,
    objects: list[dict[str, Any]],
    *,
    namespace: str | None,
    kinds: tuple[str, ...] | None,
    field_manager: str,
    log: Callable[[str], None],
) -> list[str]:
    """The one server-side apply: refuse unexpected kinds before anything is applied, then apply
    in dependency order (conflicts forced: our fields are ours) and stop at the first error."""
    if kinds is not None:
        for obj in objects:
            if obj["kind"] not in kinds:
                raise ValueError(f"cannot apply a {obj['kind']}: expected one of {', '.join(kinds)}")
    applied = []
    for obj in apply_order(objects):
        resource = _resource_of(dynamic, obj)
        where = None
        if resource.namespaced:
            where = namespace or obj["metadata"].get("namespace") or "default"
        dynamic.server_side_apply(
            resource,
            body=obj,
            name=obj["metadata"]["name"],
            namespace=where,
            field_manager=field_manager,
            force_conflicts=True,
        )
        applied.append(object_ref(obj))
        log(f"applied {object_ref(obj)}")
    return applied


def apply_objects(
    api_client: Any,
    objects: list[dict[str, Any]],
    *,
    log: Callable[[str], None] = print,
    field_manager: str = FIELD_MANAGER,
) -> list[str]:
    """:meth:`ApplyHook.apply_objects` for a bare ``ApiClient`` (a control plane's admin client)."""
    from kubernetes.dynamic import DynamicClient

    return _server_side_apply(
        DynamicClient(api_client), objects, namespace=None, kinds=None, field_manager=field_manager, log=log
    )


class ApplyHook(KubernetesHook):
    """The provider's ``KubernetesHook`` with server-side apply (``kubectl apply --server-side``).

    Hand-written because the provider only *creates* from YAML (``apply_from_yaml_file`` ->
    ``create_from_yaml``), which fails with 409 on a reused cluster; server-side apply is
    idempotent, and it is what the MPI operator's manifest needs (its CRD is too large for
    client-side apply's annotation). Any kind the API server serves is resolved by discovery.
    """

    @cached_property
    def dynamic_client(self) -> Any:
        from kubernetes.dynamic import DynamicClient

        return DynamicClient(self.api_client)

    def read_object(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """The object as the API server holds it, or ``None`` when there is none."""
        from kubernetes.dynamic.exceptions import NotFoundError

        resource = _resource_of(self.dynamic_client, {"apiVersion": api_version, "kind": kind})
        try:
            return resource.get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None

    def apply_objects(
        self,
        objects: list[dict[str, Any]],
        *,
        namespace: str | None = None,
        kinds: tuple[str, ...] | None = None,
        field_manager: str = FIELD_MANAGER,
        log: Callable[[str], None] | None = None,
    ) -> list[str]:
        """Apply ``objects`` in dependency order (created if missing, our fields updated if not);
        return their references. ``namespace`` overrides the objects' own; ``kinds`` limits what
        may be applied (anything else is refused before the first object is sent)."""
        return _server_side_apply(
            self.dynamic_client,
            objects,
            namespace=namespace,
            kinds=kinds,
            field_manager=field_manager,
            log=log or self.log.info,
        )
