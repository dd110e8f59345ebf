"""``DeployModelOperator``: serve a model version where settings.profile says, or fail with why.

local: the server process on the stable loopback port (``eksml.serving.local``).
aws:   Deployment + Service (+ Ingress) on the inference nodes, through
       :class:`~eksml.kubernetes.hooks.DeploymentHook` (the provider's ``KubernetesHook`` with
       server-side apply, rollout status, Service proxy and rollback): :func:`roll_out`.
Either way the version serves only after real predictions passed the smoke test, and a
failure leaves the previous version serving. :class:`~eksml.local.dispatch.ProfileDispatchMixin`
picks the way once per run. Heavy modules load in ``execute`` only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from eksml.errors import ServiceError
from eksml.kubernetes.links import PodLogsLink
from eksml.local.dispatch import ProfileDispatchMixin
from eksml.settings import Settings

if TYPE_CHECKING:
    from eksml.kubernetes.hooks import DeploymentHook
    from eksml.serving.smoke import Transport


class RolloutError(ServiceError):
    """The new version did not roll out or failed its smoke test (and was rolled back)."""


def roll_out(
    hook: DeploymentHook,
    objects: list[dict[str, Any]],
    check: Callable[[Transport], dict[str, Any]],
    *,
    name: str,
    namespace: str,
    timeout: float = 900.0,
    poll_interval: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Apply, wait, smoke-test through the Service; on any failure roll back, wait for it, and raise the reason."""
    from eksml.kubernetes.hooks import ROLLOUT_KINDS
    from eksml.serving.smoke import SmokeTestError

    def wait():
        return hook.wait_for_rollout(name, namespace, timeout=timeout, poll_interval=poll_interval, sleep=sleep)

    hook.apply_objects(objects, namespace=namespace, kinds=ROLLOUT_KINDS)
    status = wait()
    reason = None if status.done else f"rollout failed: {status.message}"
    smoke: dict[str, Any] | None = None
    if reason is None:
        try:
            smoke = check(hook.service_call(name, namespace))
        except SmokeTestError as exc:
            reason = f"smoke test failed: {exc.reason}"
    if reason is None:
        return {"deployment": f"{namespace}/{name}", "rollout": status.message, "smoke": smoke}
    revision = hook.rollback_deployment(name, namespace)
    if revision is None:
        raise RolloutError(f"{reason}; no previous revision to roll back to")
    after = wait()
    raise RolloutError(f"{reason}; rolled back to revision {revision} ({after.message})")


def serving_replicas(hook: DeploymentHook, name: str, namespace: str) -> int | None:
    """The replicas of the Deployment serving now (the HorizontalPodAutoscaler's choice), None before the first."""
    from kubernetes.client.exceptions import ApiException

    try:
        return hook.get_deployment(name, namespace)["spec"].get("replicas")
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


class DeployModelOperator(ProfileDispatchMixin, BaseOperator):
    """Deploy ``version`` (model version folder ``model_uri``) and smoke-test it.

    :param model_uri: the version folder (``s3://...`` for aws; ``file://`` or a path locally)
    :param version: the version name (reported by the server and recorded in labels/state)
    :param data_uri: IDX files to take the smoke-test images from (default: the version's
        ``metadata.json`` data, else settings.source_data_uri)
    :param smoke_images: how many real test images the smoke test sends
    :param min_accuracy: accuracy floor on those images (raised towards the evaluated accuracy)
    :param port: local profile: the stable port (default settings.inference_port)
    :param ingress: aws profile: also apply an ALB Ingress (default: settings.ingress)
    :param replicas: aws profile: the Deployment's replicas (default and bounds: the settings'
        autoscaler minimum and maximum)
    :param rollout_timeout: aws profile: seconds to wait for the rollout
    :param cluster_name: aws profile: the serving cluster (templated; default the settings' one,
        reached through the EKS API: :mod:`eksml.cluster.target`)
    :param settings_overrides: settings changed for this task only (resolved at run time)
    """

    template_fields: Sequence[str] = ("model_uri", "version", "data_uri", "cluster_name")
    ui_color = "#d7f0d7"
    operator_extra_links = (PodLogsLink(),)

    def __init__(
        self,
        *,
        model_uri: str,
        version: str,
        data_uri: str | None = None,
        smoke_images: int = 32,
        min_accuracy: float = 0.5,
        port: int | None = None,
        ingress: bool | None = None,
        replicas: int | None = None,
        rollout_timeout: float = 900.0,
        settings_overrides: dict | None = None,
        cluster_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cluster_name = cluster_name
        self.model_uri = model_uri
        self.version = version
        self.data_uri = data_uri
        self.smoke_images = smoke_images
        self.min_accuracy = min_accuracy
        self.port = port
        self.ingress = ingress
        self.replicas = replicas
        self.rollout_timeout = rollout_timeout
        self.settings_overrides = settings_overrides or {}

    def _data_uri(self, settings, version: Any = None) -> str:
        """The param (the deployment DAG passes what ``resolve_version`` read of ``metadata.json``),
        else the data the version was trained and evaluated on, else the settings' source."""
        if self.data_uri:
            return self.data_uri
        from eksml.storage import version_at

        metadata = (version or version_at(self.model_uri, settings)).metadata() or {}
        return metadata.get("data_uri") or settings.source_data_uri

    def _smoke_inputs(self, settings) -> tuple[str, dict[str, Any]]:
        """The smoke test's data and what the version must answer, each version file read once
        (``metrics.json`` and ``evaluation.json``; ``metadata.json`` only without ``data_uri``).

        FileNotFoundError naming the folder when the version's training did not finish.
        """
        from eksml.storage import version_at

        version = version_at(self.model_uri, settings)
        expectations = version.expectations()
        return self._data_uri(settings, version), expectations

    def execute(self, context: Any) -> dict[str, Any]:
        if not self.model_uri or not self.version:
            raise ValueError(f"model_uri and version are required, got {self.model_uri!r} and {self.version!r}")
        result = super().execute(context)
        self.log.info("serving %s: %s", self.version, {k: v for k, v in result.items() if k != "smoke"})
        smoke = result.get("smoke") or {}
        self.log.info(
            "smoke test: accuracy %s on %s images (threshold %s)",
            smoke.get("accuracy"),
            smoke.get("images"),
            smoke.get("threshold"),
        )
        return result

    def execute_local(self, context: Any, settings: Settings) -> dict[str, Any]:
        from eksml.serving.local import ServingError, deploy_local

        PodLogsLink.persist_empty(context)

        try:  # fail before starting anything
            data_uri, expectations = self._smoke_inputs(settings)
        except FileNotFoundError as exc:
            raise ServingError(str(exc)) from None
        return deploy_local(
            self.model_uri,
            self.version,
            self.port,
            settings=settings,
            data_uri=data_uri,
            smoke_images=self.smoke_images,
            min_accuracy=self.min_accuracy,
            expectations=expectations,
        )

    def execute_remote(self, context: Any, settings: Settings) -> dict[str, Any]:
        from eksml.cluster.node_contract import INFERENCE_CLUSTER
        from eksml.cluster.target import resolve_target
        from eksml.kubernetes.hooks import DeploymentHook
        from eksml.serving.manifests import render_inference_objects, resource_name
        from eksml.serving.smoke import load_test_images, smoke_test

        # Everything that can be checked without the cluster is checked before it is touched.
        objects = render_inference_objects(
            settings, self.model_uri, self.version, ingress=self.ingress, replicas=self.replicas
        )
        data_uri, expectations = self._smoke_inputs(settings)
        images, labels = load_test_images(data_uri, self.smoke_images, settings)
        target = resolve_target(settings, cluster_role=INFERENCE_CLUSTER, cluster_name=self.cluster_name)
        self.log.info("deploying to %s", target.describe())
        hook = target.hook(hook_class=DeploymentHook)
        PodLogsLink.persist_for(
            context, self, settings, target.cluster_name or settings.cluster_name, resource_name(settings)
        )

        def check(transport):
            return smoke_test(
                f"service/{resource_name(settings)}",
                settings.model_name,
                images,
                labels,
                min_accuracy=self.min_accuracy,
                transport=transport,
                **expectations,
            )

        name, namespace = resource_name(settings), settings.inference_namespace
        if self.replicas is None:  # a new version starts with as many servers as the autoscaler runs now
            running = serving_replicas(hook, name, namespace)
            if running is not None:
                objects = render_inference_objects(
                    settings, self.model_uri, self.version, ingress=self.ingress, replicas=running
                )
        result = roll_out(hook, objects, check, name=name, namespace=namespace, timeout=self.rollout_timeout)
        return {"version": self.version, **result}
