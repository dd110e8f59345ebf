"""Post-create preparation of an EKS cluster, and the wait for usable GPU nodes.

* :class:`ClusterAddonsOperator` applies (server-side, idempotent) the pinned upstream
  add-ons and the project's own objects (namespaces, IRSA service accounts, RBAC,
  autoscaler) in a few seconds, in the worker.
* :class:`GpuCapacityOperator` decides at once whether the run's GPU nodes can come (ready
  now, or added by the autoscaler when the training pod is pending); it never waits for a
  node that only a pending pod would bring.

Both reach the cluster the run resolved (:mod:`eksml.cluster.target`: built from the EKS API
with the Airflow AWS connection the settings name), or an existing ``kubernetes_conn_id`` when
one is given.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from eksml.cluster.node_contract import (
    CLUSTER_ROLES,
    EXISTING_CLUSTER,
    INFERENCE_CLUSTER,
    NODE_ROLE_LABEL,
    SHARED_CLUSTER,
    TRAIN_ROLE,
    TRAINING_CLUSTER,
)
from eksml.cluster.request import (
    KARPENTER_SCALER,
    ClusterRequest,
    cluster_name_for_role,
    inference_node_group,
    pipeline_is_creator,
    scaled_node_groups,
    train_node_group,
)
from eksml.errors import EksmlError
from eksml.settings import FROM_SETTINGS, FromSettings, Settings, SettingsMixin

if TYPE_CHECKING:
    from airflow.sdk import Context

    from eksml.cluster.apply import ApplyHook
    from eksml.cluster.target import ClusterTarget


class _ClusterTarget(SettingsMixin):
    """Shared resolution of which cluster a task talks to and how."""

    cluster: dict[str, Any]
    cluster_name: str | None
    cluster_role: str | None
    kubernetes_conn_id: str | None

    def _settings_and_request(self) -> tuple[Settings, ClusterRequest]:
        if self.cluster_role and self.cluster_role not in CLUSTER_ROLES:
            raise AirflowFailException(f"cluster_role must be one of {CLUSTER_ROLES}, got {self.cluster_role!r}")
        settings = self.resolved_settings()
        return settings, ClusterRequest.from_settings(settings, **dict(self.cluster or {}))

    def _target(self, settings: Settings, req: ClusterRequest) -> ClusterTarget:
        """The cluster of this task's role: the run's (``cluster_name``), else the settings' one."""
        from eksml.cluster.target import resolve_target

        role = TRAINING_CLUSTER if self._role(req) == TRAINING_CLUSTER else INFERENCE_CLUSTER
        return resolve_target(
            settings,
            cluster_role=role,
            cluster_name=self._target_name(req),
            kubernetes_conn_id=self.kubernetes_conn_id,
            cluster=self.cluster,
            aws_conn_id=self.resolved_aws_conn_id(),
        )

    def _role(self, req: ClusterRequest) -> str:
        """The role given, else that of the cluster that trains in the run's topology (as
        :func:`~eksml.cluster.target.resolve_target` decides for a training task)."""
        if self.cluster_role:
            return self.cluster_role
        return TRAINING_CLUSTER if req.dedicated_training_cluster else SHARED_CLUSTER

    def _target_name(self, req: ClusterRequest) -> str:
        if self.cluster_name:
            return self.cluster_name
        return cluster_name_for_role(req, self._role(req))


def _nothing(_hook: ApplyHook) -> list[dict[str, Any]]:
    """No objects that depend on the cluster's state."""
    return []


class ClusterAddonsOperator(_ClusterTarget, BaseOperator):
    """Install pinned add-ons and the pipeline's namespaces, service accounts, RBAC and autoscaler.

    With ``settings.ingress`` on, clusters that serve also get the AWS Load Balancer Controller,
    its webhook certificate made here and kept across runs.

    :param cluster_name: cluster to prepare (templated; default from settings and
        ``cluster_role``). For an ephemeral cluster pass the create task's XCom.
    :param cluster_role: ``all`` (shared cluster), ``training`` or ``inference`` (dedicated
        topology). The device plugin and MPI operator go to clusters that train.
    :param cluster: ClusterRequest overrides, as given to the eksctl operator.
    :param cluster_mode: as for the eksctl operator; ``existing`` makes this a no-op (a
        training run does not modify the shared cluster).
    :param aws_conn_id: the AWS connection (EKS, STS, the token); default the settings' one.
    :param settings: configuration; ``None`` resolves it at run time.
    """

    template_fields: Sequence[str] = ("cluster_name", "cluster_role", "cluster", "cluster_mode")
    ui_color = "#326ce5"

    def __init__(
        self,
        *,
        cluster_name: str | None = None,
        cluster_role: str = SHARED_CLUSTER,
        cluster: dict[str, Any] | None = None,
        aws_conn_id: str | None | FromSettings = FROM_SETTINGS,
        kubernetes_conn_id: str | None = None,
        install_upstream: bool = True,
        cluster_mode: str | None = None,
        settings: Settings | None = None,
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
        self.settings = settings

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.sts import StsHook

        from eksml.cluster.addons import addon_objects
        from eksml.cluster.apply import ApplyHook
        from eksml.cluster.objects import render_kubernetes_objects

        settings, req = self._settings_and_request()
        name = self._target_name(req)
        if (self.cluster_mode or "").strip() == EXISTING_CLUSTER:
            self.log.info("cluster mode 'existing': the shared cluster %s is prepared by the eks_cluster DAG", name)
            return {"cluster": name, "applied": []}
        role = self._role(req)
        self._check_node_groups(req, name, role)
        caller = StsHook(aws_conn_id=self.resolved_aws_conn_id(), region_name=req.region).conn.get_caller_identity()
        account = caller["Account"]
        objects: list[dict[str, Any]] = []
        if self.install_upstream and role in (SHARED_CLUSTER, TRAINING_CLUSTER):
            objects.extend(addon_objects())
        objects.extend(
            render_kubernetes_objects(settings, cluster_role=role, account_id=account, request=req, cluster_name=name)
        )
        at_install = _nothing
        if req.ingress and role in (SHARED_CLUSTER, INFERENCE_CLUSTER):
            from eksml.cluster.eks import cluster_vpc_id

            vpc_id = cluster_vpc_id(name, req.region, self.resolved_aws_conn_id())
            at_install = functools.partial(
                self._load_balancer_controller, cluster=name, region=req.region, vpc_id=vpc_id
            )
        target = self._target(settings, req)
        self.log.info("preparing %s", target.describe())
        if not target.is_eks:  # a connection managed by hand: its own rights
            hook = target.hook(hook_class=ApplyHook)
            return {"cluster": name, "applied": hook.apply_objects([*objects, *at_install(hook)], log=self.log.info)}
        from eksml.cluster.eks import cluster_admin_while
        from eksml.cluster.iam import principal_arn

        principal = principal_arn(caller["Arn"])
        grant = pipeline_is_creator(req.with_overrides({"creator_arn": principal}))
        with cluster_admin_while(
            name, req.region, principal, self.resolved_aws_conn_id(), log=self.log.info, creation_grant=grant
        ):
            applied = self._apply_when_authorized(target.hook(hook_class=ApplyHook), objects, at_install)
        return {"cluster": name, "applied": applied}

    def _load_balancer_controller(
        self, hook: ApplyHook, *, cluster: str, region: str, vpc_id: str
    ) -> list[dict[str, Any]]:
        """The AWS Load Balancer Controller, with the webhook certificate of the cluster's Secret
        kept (a running controller keeps its key) unless it is missing or due, then a new one."""
        from eksml.cluster.loadbalancer import (
            NAMESPACE,
            WEBHOOK_SECRET,
            controller_objects,
            webhook_certificate,
        )
        from eksml.cluster.node_contract import INFERENCE_ROLE

        tls, kept = webhook_certificate(hook.read_object("v1", "Secret", WEBHOOK_SECRET, NAMESPACE))
        self.log.info(
            "%s the load balancer controller's webhook certificate (valid until %s)",
            "keeping" if kept else "made",
            tls.not_after().date(),
        )
        # On a serving cluster the CPU nodes hold its controllers (node_contract.INFERENCE_ROLE).
        return controller_objects(cluster=cluster, region=region, vpc_id=vpc_id, node_role=INFERENCE_ROLE, tls=tls)

    def _apply_when_authorized(
        self,
        hook: ApplyHook,
        objects: list[dict[str, Any]],
        at_install: Callable[[ApplyHook], list[dict[str, Any]]] = _nothing,
        attempts: int = 12,
    ) -> list[str]:
        """Apply ``objects`` and what ``at_install`` builds from the cluster's state; a just-granted
        access policy takes seconds to reach the API server, so a 403 is retried for about a
        minute before it counts."""
        import time

        from kubernetes.client.exceptions import ApiException

        for attempt in range(attempts):
            try:
                return hook.apply_objects([*objects, *at_install(hook)], log=self.log.info)
            except ApiException as exc:
                if exc.status != 403 or attempt == attempts - 1:
                    raise
                self.log.info("not yet authorized (403); retrying in 5 s")
                time.sleep(5)
        return []  # attempts < 1

    def _check_node_groups(self, req: ClusterRequest, name: str, role: str) -> None:
        """Fail now if the cluster's node groups cannot host the pipeline's pods."""
        from eksml.cluster.eks import describe_nodegroups, nodegroup_drift

        groups = {
            SHARED_CLUSTER: (train_node_group(req), inference_node_group(req)),
            TRAINING_CLUSTER: (train_node_group(req),),
            INFERENCE_CLUSTER: (inference_node_group(req),),
        }[role]
        groups = scaled_node_groups(req, groups)
        errors, warnings = nodegroup_drift(
            list(groups), describe_nodegroups(name, req.region, self.resolved_aws_conn_id())
        )
        for warning in warnings:
            self.log.warning("%s", warning)
        if errors:
            raise AirflowFailException(f"cluster {name!r} does not match the pipeline: " + "; ".join(errors))


class NoGpuCapacityError(EksmlError, AirflowFailException):
    """The run's GPUs cannot come: the node group is too small, or nothing would scale it up."""


class GpuCapacityOperator(_ClusterTarget, BaseOperator):
    """Check, without waiting, that the training cluster can give this run its GPU nodes.

    The GPU node group scales to zero: its nodes come only when a GPU pod is pending and the
    cluster autoscaler reacts to it. Waiting here for a Ready GPU node, before the training
    pod exists, would wait for ever. So this task decides at once:

    * the node group (EKS API) must be ACTIVE with a max size that fits the nodes the run
      needs, else :class:`NoGpuCapacityError` naming the group, its max size and the EC2 quota;
    * if enough GPU nodes are Ready now, training starts on them;
    * else the cluster autoscaler must be running (Deployment ``kube-system/cluster-autoscaler``
      available), because the training pod's Pending state is what adds the nodes; else the
      error names the group and the fix. The training pod's own startup timeout bounds the
      scale-up itself.

    :param cluster_name: the run's training cluster (templated); empty means the settings' one.
    :param cluster_role: ``training`` (dedicated topology) or ``all`` (shared); default the topology
        the run resolved, so an empty ``cluster_name`` names the cluster that trains.
    :param nodes: GPU nodes the run needs at once (templated; default 1).
    :param aws_conn_id: the AWS connection (EKS, the token); default the settings' one.
    :param settings: configuration; ``None`` resolves it at run time.
    """

    template_fields: Sequence[str] = ("cluster_name", "cluster_role", "cluster", "nodes")
    ui_color = "#76b900"

    def __init__(
        self,
        *,
        cluster_name: str | None = None,
        cluster_role: str | None = None,
        cluster: dict[str, Any] | None = None,
        nodes: int | str | None = None,
        node_selector: str = f"{NODE_ROLE_LABEL}={TRAIN_ROLE}",
        aws_conn_id: str | None | FromSettings = FROM_SETTINGS,
        kubernetes_conn_id: str | None = None,
        settings: Settings | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cluster_name = cluster_name
        self.cluster_role = cluster_role
        self.cluster = cluster or {}
        self.nodes = nodes
        self.node_selector = node_selector
        self.aws_conn_id = aws_conn_id
        self.kubernetes_conn_id = kubernetes_conn_id
        self.settings = settings

    def execute(self, context: Context) -> dict[str, Any]:
        from eksml.cluster.eks import autoscaler_available, describe_gpu_group, usable_gpu_nodes

        settings, req = self._settings_and_request()
        train = train_node_group(req)
        if train.problems():
            raise AirflowFailException("; ".join(train.problems()))
        needed = int(self.nodes) if self.nodes not in (None, "") else 1
        name = self._target_name(req)
        if req.node_scaler == KARPENTER_SCALER:
            return self._karpenter_capacity(settings, req, name, needed, train.gpus_per_node)
        group, where, quota_hint = describe_gpu_group(
            name, req.region, self.resolved_aws_conn_id(), train.name, train.instance_types, train.spot
        )
        if group is None or group.status != "ACTIVE":
            raise NoGpuCapacityError(
                f"no GPU capacity: {where} is {group.status if group else 'missing'}; "
                "run the eks_cluster DAG with action=create"
            )
        if group.max_size < needed:
            raise NoGpuCapacityError(
                f"no GPU capacity: the run needs {needed} GPU node(s) but {where} allows "
                f"at most {group.max_size}; raise its max size (train_max_nodes); {quota_hint}"
            )
        hook = self._target(settings, req).hook()
        nodes = hook.core_v1_client.list_node(label_selector=self.node_selector).items
        ready = usable_gpu_nodes(nodes, train.gpus_per_node)
        if len(ready) >= needed:
            self.log.info("%d GPU node(s) Ready in %s: %s", len(ready), where, ", ".join(n.name for n in ready))
            return {"decision": "ready", "cluster": name, "ready": len(ready), "needed": needed}
        if not autoscaler_available(hook.get_conn()):
            raise NoGpuCapacityError(
                f"no GPU capacity: {len(ready)} of {needed} GPU node(s) Ready in {where} and no cluster "
                "autoscaler is running to add them when the training pod is pending; run prepare_cluster "
                "(it installs the autoscaler) or raise the group's desired size"
            )
        self.log.info(
            "%d of %d GPU node(s) Ready in %s: the cluster autoscaler adds them when the training "
            "pod is pending (the pod's startup timeout bounds the wait); %s",
            len(ready),
            needed,
            where,
            quota_hint,
        )
        return {
            "decision": "scale-up-on-pending-pod",
            "cluster": name,
            "ready": len(ready),
            "needed": needed,
            "max_size": group.max_size,
            "quota": quota_hint.split()[2],
        }

    def _karpenter_capacity(
        self, settings: Settings, req: ClusterRequest, name: str, needed: int, gpus_per_node: int
    ) -> dict[str, Any]:
        """With Karpenter there is no GPU node group: the GPU NodePool's limit bounds the run, and
        the Karpenter controller launches the nodes when the training pod is pending."""
        from eksml.cluster.eks import deployment_available, usable_gpu_nodes
        from eksml.cluster.karpenter import CONTROLLER, CONTROLLER_NAMESPACE, NODE_POOL, node_pool_gpu_limit

        hook = self._target(settings, req).hook()
        where = f"Karpenter NodePool {NODE_POOL} of cluster {name}"
        limit = node_pool_gpu_limit(hook.api_client)
        if limit is None:
            raise NoGpuCapacityError(f"no GPU capacity: {where} is missing; run prepare_cluster (it applies it)")
        gpus = needed * gpus_per_node
        if 0 <= limit < gpus:
            raise NoGpuCapacityError(
                f"no GPU capacity: the run needs {gpus} GPU(s) but {where} is limited to {limit}; raise "
                "train_max_nodes and run prepare_cluster (it applies the NodePool's limits)"
            )
        nodes = hook.core_v1_client.list_node(label_selector=self.node_selector).items
        ready = usable_gpu_nodes(nodes, gpus_per_node)
        if len(ready) >= needed:
            self.log.info("%d GPU node(s) Ready in %s: %s", len(ready), where, ", ".join(n.name for n in ready))
            return {"decision": "ready", "cluster": name, "ready": len(ready), "needed": needed}
        if not deployment_available(hook.api_client, CONTROLLER, CONTROLLER_NAMESPACE):
            raise NoGpuCapacityError(
                f"no GPU capacity: {len(ready)} of {needed} GPU node(s) Ready for {where} and the Karpenter "
                f"controller ({CONTROLLER_NAMESPACE}/{CONTROLLER}) is not available to launch them; run "
                "prepare_cluster (it installs the controller)"
            )
        self.log.info(
            "%d of %d GPU node(s) Ready: Karpenter launches them from %s when the training pod is pending "
            "(the pod's startup timeout bounds the wait)",
            len(ready),
            needed,
            where,
        )
        return {
            "decision": "karpenter-launch-on-pending-pod",
            "cluster": name,
            "ready": len(ready),
            "needed": needed,
            "gpu_limit": limit,
        }
