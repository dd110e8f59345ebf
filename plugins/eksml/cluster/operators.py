"""Post-create preparation of an EKS cluster, and the wait for usable GPU nodes.

* :class:`ClusterAddonsOperator` applies (server-side, idempotent) the pinned upstream
  add-ons and the project's own objects (namespaces, IRSA service accounts, RBAC,
  autoscaler) in a few seconds, in the worker.
* :class:`GpuNodesReadySensor` polls node status through the cncf-kubernetes
  ``KubernetesHook`` until enough ``role=train`` nodes advertise ``nvidia.com/gpu``; it
  defaults to ``mode="reschedule"`` so no worker slot is held while nodes boot.

Both reach the cluster through :func:`~eksml.cluster.connection.eks_kubernetes_hook`
(built from the EKS API with the Airflow AWS connection), or through an existing
``kubernetes_conn_id`` when one is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException

from eksml.eksctl.request import ClusterRequest, cluster_name_for_role, inference_node_group, train_node_group

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from airflow.sdk import Context

CLUSTER_ROLES = ("all", "training", "inference")


class _ClusterTarget:
    """Shared resolution of which cluster a task talks to and how."""

    cluster: dict[str, Any]
    cluster_name: str | None
    cluster_role: str
    aws_conn_id: str | None
    kubernetes_conn_id: str | None

    def _settings_and_request(self) -> tuple[Any, ClusterRequest]:
        from eksml.settings import load_settings

        if self.cluster_role not in CLUSTER_ROLES:
            raise AirflowFailException(f"cluster_role must be one of {CLUSTER_ROLES}, got {self.cluster_role!r}")
        settings = load_settings(use_airflow_variable=True)
        return settings, ClusterRequest.from_settings(settings, **dict(self.cluster or {}))

    def _target_name(self, req: ClusterRequest) -> str:
        if self.cluster_name:
            return self.cluster_name
        return cluster_name_for_role(req, self.cluster_role)

    def _hook(self, name: str, region: str, namespace: str | None = None) -> KubernetesHook:
        if self.kubernetes_conn_id:
            from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

            return KubernetesHook(conn_id=self.kubernetes_conn_id)
        from eksml.cluster.connection import eks_kubernetes_hook

        return eks_kubernetes_hook(name, region, aws_conn_id=self.aws_conn_id, namespace=namespace)


class ClusterAddonsOperator(_ClusterTarget, BaseOperator):
    """Install pinned add-ons and the pipeline's namespaces, service accounts, RBAC and autoscaler.

    :param cluster_name: cluster to prepare (templated; default from settings and
        ``cluster_role``). For an ephemeral cluster pass the create task's XCom.
    :param cluster_role: ``all`` (shared cluster), ``training`` or ``inference`` (dedicated
        layout). The device plugin and MPI operator go to clusters that train.
    :param cluster: ClusterRequest overrides, as given to the eksctl operator.
    :param cluster_mode: as for the eksctl operator; ``existing`` makes this a no-op (a
        training run does not modify the shared cluster).
    """

    template_fields: Sequence[str] = ("cluster_name", "cluster_role", "cluster", "cluster_mode")
    ui_color = "#326ce5"

    def __init__(
        self,
        *,
        cluster_name: str | None = None,
        cluster_role: str = "all",
        cluster: dict[str, Any] | None = None,
        aws_conn_id: str | None = "aws_default",
        kubernetes_conn_id: str | None = None,
        install_upstream: bool = True,
        cluster_mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cluster_mode = cluster_mode
        self.cluster_name = cluster_name
        self.cluster_role = cluster_role
        self.cluster = cluster or {}
        self.aws_conn_id = aws_conn_id
        self.kubernetes_conn_id = kubernetes_conn_id
        self.install_upstream = install_upstream

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.sts import StsHook

        from eksml.cluster.addons import addon_objects
        from eksml.cluster.apply import apply_objects
        from eksml.cluster.objects import render_kubernetes_objects

        settings, req = self._settings_and_request()
        name = self._target_name(req)
        if (self.cluster_mode or "").strip() == "existing":
            self.log.info("cluster mode 'existing': the shared cluster %s is prepared by the eks_cluster DAG", name)
            return {"cluster": name, "applied": []}
        self._check_node_groups(req, name)
        account = StsHook(aws_conn_id=self.aws_conn_id, region_name=req.region).get_account_number()
        objects: list[dict[str, Any]] = []
        if self.install_upstream and self.cluster_role in ("all", "training"):
            objects.extend(addon_objects())
        objects.extend(
            render_kubernetes_objects(
                settings, cluster_role=self.cluster_role, account_id=account, request=req, cluster_name=name
            )
        )
        hook = self._hook(name, req.region)
        applied = apply_objects(hook.api_client, objects, log=self.log.info)
        return {"cluster": name, "applied": applied}

    def _check_node_groups(self, req: ClusterRequest, name: str) -> None:
        """Fail now if the cluster's node groups cannot host the pipeline's pods."""
        from eksml.cluster.eks import describe_nodegroups, nodegroup_drift

        groups = {
            "all": (train_node_group(req), inference_node_group(req)),
            "training": (train_node_group(req),),
            "inference": (inference_node_group(req),),
        }[self.cluster_role]
        errors, warnings = nodegroup_drift(list(groups), describe_nodegroups(name, req.region, self.aws_conn_id))
        for warning in warnings:
            self.log.warning("%s", warning)
        if errors:
            raise AirflowFailException(f"cluster {name!r} does not match the pipeline: " + "; ".join(errors))


class GpuNodesReadySensor(_ClusterTarget, BaseSensorOperator):
    """Wait until ``min_nodes`` train nodes are Ready and advertise their GPUs.

    :param min_nodes: nodes to wait for (templated; default: the requested ``train_nodes``).
        0 returns at once: the autoscaler adds GPU nodes when training pods are pending.
    :param gpus_per_node: GPUs each node must advertise (default: the instance type's count).
    """

    template_fields: Sequence[str] = ("cluster_name", "cluster_role", "cluster", "min_nodes")
    ui_color = "#76b900"

    def __init__(
        self,
        *,
        cluster_name: str | None = None,
        cluster_role: str = "all",
        cluster: dict[str, Any] | None = None,
        min_nodes: int | str | None = None,
        gpus_per_node: int | None = None,
        node_selector: str = "role=train",
        aws_conn_id: str | None = "aws_default",
        kubernetes_conn_id: str | None = None,
        mode: str = "reschedule",
        poke_interval: float = 60,
        timeout: float = 40 * 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(mode=mode, poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.cluster_name = cluster_name
        self.cluster_role = cluster_role
        self.cluster = cluster or {}
        self.min_nodes = min_nodes
        self.gpus_per_node = gpus_per_node
        self.node_selector = node_selector
        self.aws_conn_id = aws_conn_id
        self.kubernetes_conn_id = kubernetes_conn_id

    def poke(self, context: Context) -> bool:
        from eksml.cluster.gpu import usable_gpu_nodes

        _, req = self._settings_and_request()
        train = train_node_group(req)
        if train.problems():
            raise AirflowFailException("; ".join(train.problems()))
        wanted = int(self.min_nodes) if self.min_nodes not in (None, "") else train.desired_capacity
        per_node = self.gpus_per_node or train.gpus_per_node
        if wanted <= 0:
            self.log.info("no GPU nodes requested: the autoscaler adds them when training pods are pending")
            return True
        hook = self._hook(self._target_name(req), req.region)
        nodes = hook.core_v1_client.list_node(label_selector=self.node_selector).items
        usable = usable_gpu_nodes(nodes, per_node)
        self.log.info(
            "%d/%d node(s) matching %s are Ready with >= %d GPU(s): %s",
            len(usable),
            wanted,
            self.node_selector,
            per_node,
            ", ".join(n.name for n in usable) or "-",
        )
        return len(usable) >= wanted
