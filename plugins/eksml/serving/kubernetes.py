"""Roll a model version out on Kubernetes, prove it through its Service, roll back on failure.

Uses the Kubernetes API client of the cncf-kubernetes provider's ``KubernetesHook``. The
provider's resource operators only create or delete objects, and it has no rollout wait or
rollback for Deployments, hence this module: objects are applied with server-side apply
(``kubectl apply --server-side``), the rollout is polled the way ``kubectl rollout status``
reads it, the smoke test goes through the API server's service proxy (no Ingress or port
forward needed), and a failure restores the previous ReplicaSet's pod template
(``kubectl rollout undo``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from eksml.serving.manifests import FIELD_MANAGER
from eksml.serving.rollout import RolloutStatus, previous_template, rollout_status
from eksml.serving.smoke import SmokeTestError, Transport

log = logging.getLogger(__name__)


class RolloutError(RuntimeError):
    """The new version did not roll out or failed its smoke test (and was rolled back)."""


class InferenceRollout:
    """One Deployment + Service of the inference server, through an API client."""

    def __init__(
        self,
        api_client: Any,
        namespace: str,
        name: str,
        *,
        timeout: float = 900.0,
        poll_interval: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.namespace = namespace
        self.name = name
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.sleep = sleep
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.networking = client.NetworkingV1Api(api_client)

    # --- apply ---------------------------------------------------------------------------
    def apply(self, objects: list[dict[str, Any]]) -> None:
        """Server-side apply of each object (created if missing, our fields updated if not)."""
        patchers = {
            "Deployment": self.apps.patch_namespaced_deployment,
            "Service": self.core.patch_namespaced_service,
            "Ingress": self.networking.patch_namespaced_ingress,
        }
        for obj in objects:
            kind, name = obj["kind"], obj["metadata"]["name"]
            if kind not in patchers:
                raise ValueError(f"cannot apply a {kind}: expected one of {', '.join(patchers)}")
            patchers[kind](
                name,
                self.namespace,
                obj,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
            )
            log.info("applied %s %s/%s", kind, self.namespace, name)

    def deployment(self) -> dict[str, Any]:
        return self.api_client.sanitize_for_serialization(
            self.apps.read_namespaced_deployment(self.name, self.namespace)
        )

    # --- wait ----------------------------------------------------------------------------
    def wait(self) -> RolloutStatus:
        """Poll until the rollout is done, failed, or ``timeout`` passed (reported as failed)."""
        deadline = time.monotonic() + self.timeout
        status = RolloutStatus(False, False, "not checked yet")
        while time.monotonic() < deadline:
            status = rollout_status(self.deployment())
            log.info("rollout of %s: %s", self.name, status.message)
            if status.done or status.failed:
                return status
            self.sleep(self.poll_interval)
        return RolloutStatus(False, True, f"rollout not finished after {self.timeout:.0f} s: {status.message}")

    # --- smoke test through the Service --------------------------------------------------
    def service_transport(self, port: str = "http") -> Transport:
        """HTTP to the Service through the API server's proxy subresource."""
        base = f"/api/v1/namespaces/{self.namespace}/services/{self.name}:{port}/proxy"

        def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
            from kubernetes.client.exceptions import ApiException

            try:
                response = self.api_client.call_api(
                    base + path,
                    method,
                    header_params={"Content-Type": "application/json", "Accept": "application/json"},
                    body=body,
                    auth_settings=["BearerToken"],
                    _preload_content=False,
                    _return_http_data_only=True,
                    _request_timeout=60,
                )
                return response.status, json.loads(response.data)
            except ApiException as exc:
                try:
                    return exc.status, json.loads(exc.body)
                except (TypeError, ValueError):
                    return exc.status, exc.body
            except ValueError as exc:  # a 2xx reply that is not JSON
                return 0, f"unreadable reply: {exc}"

        return call

    # --- rollback ------------------------------------------------------------------------
    def rollback(self) -> int | None:
        """Return the Deployment to its previous revision's pod template; None if it has none."""
        deployment = self.deployment()
        selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
        replicasets = self.api_client.sanitize_for_serialization(
            self.apps.list_namespaced_replica_set(self.namespace, label_selector=selector).items
        )
        previous = previous_template(deployment, replicasets)
        if previous is None:
            return None
        revision, template = previous
        self.apps.patch_namespaced_deployment(
            self.name, self.namespace, [{"op": "replace", "path": "/spec/template", "value": template}]
        )
        log.warning("rolled %s back to revision %d", self.name, revision)
        return revision

    # --- the whole step ------------------------------------------------------------------
    def deploy(self, objects: list[dict[str, Any]], check: Callable[[Transport], dict[str, Any]]) -> dict[str, Any]:
        """Apply, wait, smoke-test; on any failure roll back, wait for it, and raise the reason."""
        self.apply(objects)
        status = self.wait()
        reason = None if status.done else f"rollout failed: {status.message}"
        smoke: dict[str, Any] | None = None
        if reason is None:
            try:
                smoke = check(self.service_transport())
            except SmokeTestError as exc:
                reason = f"smoke test failed: {exc.reason}"
        if reason is None:
            return {"deployment": f"{self.namespace}/{self.name}", "rollout": status.message, "smoke": smoke}
        revision = self.rollback()
        if revision is None:
            raise RolloutError(f"{reason}; no previous revision to roll back to")
        after = self.wait()
        raise RolloutError(f"{reason}; rolled back to revision {revision} ({after.message})")
