"""``MPIJobTrigger``: wait in the triggerer for an MPIJob to finish, holding no worker slot.

Hand-written because the cncf-kubernetes provider has triggers for pods and batch Jobs only;
it reuses the provider's ``AsyncKubernetesHook`` (connection handling, token refresh) and its
retry policy for transient API errors, and polls the job's ``status.conditions``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from functools import cached_property
from typing import Any

from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook
from airflow.providers.cncf.kubernetes.kubernetes_helper_functions import generic_api_retry
from airflow.triggers.base import BaseTrigger, TriggerEvent
from kubernetes_asyncio import client as async_client

from eksml.kubernetes.mpijob import GROUP, PLURAL, VERSION
from eksml.kubernetes.mpijob_status import CREATED, PENDING, SUCCEEDED, job_phase


class MPIJobTrigger(BaseTrigger):
    """Poll MPIJob ``namespace/name`` until it is Succeeded or Failed, or a deadline passes.

    Fires one event: ``{"status": "success" | "failed" | "timeout" | "error", "name",
    "namespace", "phase", "reason", "message"}``.

    :param startup_deadline: epoch seconds by which the job must have left Pending/Created
        (workers scheduled and Ready, launcher running); ``None`` for no limit.
    :param execution_deadline: epoch seconds at which waiting stops (the task's
        ``execution_timeout``), so the operator can delete the job instead of orphaning it.
    :param eks_target: a :class:`~eksml.cluster.target.ClusterTarget` as a dict: reach that EKS
        cluster (kubeconfig built in the triggerer) instead of ``kubernetes_conn_id``.
    """

    def __init__(
        self,
        *,
        name: str,
        namespace: str,
        kubernetes_conn_id: str | None = None,
        connection_extras: dict[str, Any] | None = None,
        config_dict: dict[str, Any] | None = None,
        cluster_context: str | None = None,
        in_cluster: bool | None = None,
        poll_interval: float = 30.0,
        startup_deadline: float | None = None,
        execution_deadline: float | None = None,
        eks_target: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.eks_target = eks_target
        self.name = name
        self.namespace = namespace
        self.kubernetes_conn_id = kubernetes_conn_id
        self.connection_extras = connection_extras
        self.config_dict = config_dict
        self.cluster_context = cluster_context
        self.in_cluster = in_cluster
        self.poll_interval = poll_interval
        self.startup_deadline = startup_deadline
        self.execution_deadline = execution_deadline
        self._fired = False

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "name": self.name,
                "namespace": self.namespace,
                "kubernetes_conn_id": self.kubernetes_conn_id,
                "connection_extras": self.connection_extras,
                "config_dict": self.config_dict,
                "cluster_context": self.cluster_context,
                "in_cluster": self.in_cluster,
                "poll_interval": self.poll_interval,
                "startup_deadline": self.startup_deadline,
                "execution_deadline": self.execution_deadline,
                "eks_target": self.eks_target,
            },
        )

    @cached_property
    def hook(self) -> AsyncKubernetesHook:
        if self.eks_target:  # the run's EKS cluster: endpoint, CA and token fetched here, in the triggerer
            from eksml.cluster.target import ClusterTarget

            config = ClusterTarget.from_dict(self.eks_target).kubeconfig(self.namespace)
            return AsyncKubernetesHook(conn_id=None, config_dict=config, in_cluster=False)
        return AsyncKubernetesHook(
            conn_id=self.kubernetes_conn_id,
            connection_extras=self.connection_extras,
            config_dict=self.config_dict,
            cluster_context=self.cluster_context,
            in_cluster=self.in_cluster,
        )

    @generic_api_retry
    async def read_job(self) -> dict[str, Any]:
        """The MPIJob object as the API returns it (transient errors are retried)."""
        async with self.hook.get_conn() as api_client:
            api = async_client.CustomObjectsApi(api_client)
            return await api.get_namespaced_custom_object(
                group=GROUP, version=VERSION, namespace=self.namespace, plural=PLURAL, name=self.name
            )

    @generic_api_retry
    async def delete_job(self) -> None:
        """Delete the MPIJob and, through owner references, its pods; a missing job is fine."""
        async with self.hook.get_conn() as api_client:
            api = async_client.CustomObjectsApi(api_client)
            try:
                await api.delete_namespaced_custom_object(
                    group=GROUP,
                    version=VERSION,
                    namespace=self.namespace,
                    plural=PLURAL,
                    name=self.name,
                    propagation_policy="Background",
                )
            except async_client.ApiException as exc:
                if exc.status != 404:
                    raise

    def _event(self, status: str, phase: str, reason: str = "", message: str = "") -> TriggerEvent:
        self._fired = True
        return TriggerEvent(
            {
                "status": status,
                "name": self.name,
                "namespace": self.namespace,
                "phase": phase,
                "reason": reason,
                "message": message,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        ref = f"MPIJob {self.namespace}/{self.name}"
        last_seen = None
        while True:
            try:
                job = await self.read_job()
            except async_client.ApiException as exc:
                reason = "NotFound" if exc.status == 404 else f"ApiError{exc.status}"
                detail = (
                    "no longer exists (deleted?)" if exc.status == 404 else f"cannot be read: {exc.status} {exc.reason}"
                )
                yield self._event("error", last_seen or PENDING, reason, f"{ref} {detail}")
                return
            except Exception as exc:  # retries exhausted: let the task fail through execute_complete, which cleans up
                yield self._event("error", last_seen or PENDING, type(exc).__name__, f"{ref} cannot be read: {exc}")
                return
            phase = job_phase(job)
            if phase.phase != last_seen:
                self.log.info("%s is %s", ref, phase.describe())
                last_seen = phase.phase
            if phase.terminal:
                status = "success" if phase.phase == SUCCEEDED else "failed"
                yield self._event(status, phase.phase, phase.reason, phase.message)
                return
            now = time.time()
            if self.execution_deadline is not None and now >= self.execution_deadline:
                yield self._event(
                    "timeout",
                    phase.phase,
                    "ExecutionTimeout",
                    f"{ref} still {phase.describe()} when the task's execution_timeout expired",
                )
                return
            if phase.phase in (PENDING, CREATED) and self.startup_deadline is not None and now >= self.startup_deadline:
                yield self._event(
                    "timeout",
                    phase.phase,
                    "StartupTimeout",
                    f"{ref} did not start running in time (workers not scheduled or not Ready): {phase.describe()}",
                )
                return
            await asyncio.sleep(self.poll_interval)

    async def on_kill(self) -> None:
        """The task was killed while deferred (mark failed, clear): stop the training it started."""
        if self._fired:
            return
        self.log.info("Deleting MPIJob %s/%s: its task was stopped", self.namespace, self.name)
        try:
            await self.delete_job()
        except Exception:
            self.log.exception("Could not delete MPIJob %s/%s", self.namespace, self.name)
