"""Triggers that wait in the triggerer, holding no worker slot, on the cluster the run resolved.

* :class:`MPIJobTrigger` - hand-written because the provider has triggers for pods and batch
  Jobs only; it only awaits :meth:`AsyncMPIJobHook.wait_for_mpijob` (and deletes the job
  through the hook when the task is killed while deferred).
* :class:`EksTargetPodTrigger` - the provider's ``KubernetesPodTrigger``, reaching an EKS
  cluster through a kubeconfig built in the triggerer.

Only names travel through the metadata database: an EKS cluster's endpoint, CA and a token
signed with the AWS connection's credentials are fetched when the trigger runs
(:mod:`eksml.cluster.target`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import cached_property
from typing import Any

from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook
from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger
from airflow.triggers.base import BaseTrigger, TriggerEvent

from eksml.cluster.target import ClusterTarget
from eksml.kubernetes.hooks import AsyncMPIJobHook


class MPIJobTrigger(BaseTrigger):
    """Wait until MPIJob ``namespace/name`` Succeeded or Failed, or a deadline passed.

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
    def hook(self) -> AsyncMPIJobHook:
        if self.eks_target:  # the run's EKS cluster: endpoint, CA and token fetched here, in the triggerer
            config = ClusterTarget.from_dict(self.eks_target).kubeconfig(self.namespace)
            return AsyncMPIJobHook(conn_id=None, config_dict=config, in_cluster=False)
        return AsyncMPIJobHook(
            conn_id=self.kubernetes_conn_id,
            connection_extras=self.connection_extras,
            config_dict=self.config_dict,
            cluster_context=self.cluster_context,
            in_cluster=self.in_cluster,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        event = await self.hook.wait_for_mpijob(
            self.name,
            self.namespace,
            poll_interval=self.poll_interval,
            startup_deadline=self.startup_deadline,
            execution_deadline=self.execution_deadline,
        )
        self._fired = True
        yield TriggerEvent(event)

    async def on_kill(self) -> None:
        """The task was killed while deferred (mark failed, clear): stop the training it started."""
        if self._fired:
            return
        self.log.info("Deleting MPIJob %s/%s: its task was stopped", self.namespace, self.name)
        try:
            await self.hook.delete_mpijob(self.name, self.namespace)
        except Exception:
            self.log.exception("Could not delete MPIJob %s/%s", self.namespace, self.name)


class EksTargetPodTrigger(KubernetesPodTrigger):
    """The provider's pod trigger, reaching an EKS cluster through a kubeconfig built in the triggerer.

    Only the cluster's name, region and AWS connection id are serialised; the endpoint, CA and
    a token signed with the connection's credentials are fetched when the trigger runs.
    """

    def __init__(self, *, eks_target: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.eks_target = eks_target

    @classmethod
    def from_trigger(cls, trigger: KubernetesPodTrigger, target: ClusterTarget) -> EksTargetPodTrigger:
        _, kwargs = trigger.serialize()
        return cls(eks_target=target.to_dict(), **kwargs)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        return f"{type(self).__module__}.{type(self).__qualname__}", {**kwargs, "eks_target": self.eks_target}

    @cached_property
    def hook(self) -> AsyncKubernetesHook:
        config = ClusterTarget.from_dict(self.eks_target).kubeconfig(self.pod_namespace)
        return AsyncKubernetesHook(
            conn_id=None, in_cluster=False, config_dict=config, cluster_context=self.cluster_context
        )
