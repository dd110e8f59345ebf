"""Which Kubernetes API a task talks to: the cluster its run resolved, reached through the EKS API.

Every Kubernetes task (training pod, MPIJob, evaluation, add-ons, GPU capacity check,
deployment) resolves one :class:`ClusterTarget` at run time:

* an explicit ``kubernetes_conn_id`` (the task's argument, else ``Settings.kubernetes_conn_id``
  when set) wins: a cluster that is not EKS, or a connection managed by hand;
* otherwise the EKS cluster named by the run (an ephemeral cluster's name from the create task),
  else the one the settings give for the task's role (``<name>-training`` for training in the
  dedicated topology, ``<name>`` for the rest). Its endpoint and CA come from ``DescribeCluster``
  and the bearer token is signed with the configured AWS connection's credentials, in the
  process that uses it (worker or triggerer), as the amazon provider's ``EksPodOperator`` does.

The target is serialisable (names only, never credentials), so a trigger rebuilds the same
connection in the triggerer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from eksml.cluster.node_contract import INFERENCE_CLUSTER, TRAIN_ROLE, TRAINING_CLUSTER
from eksml.settings import FROM_SETTINGS, FromSettings

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    from eksml.settings import Settings

H = TypeVar("H", bound="KubernetesHook")


@dataclass(frozen=True)
class ClusterTarget:
    """A Kubernetes connection id, or an EKS cluster (name, region, AWS connection)."""

    conn_id: str | None = None
    cluster_name: str | None = None
    region: str | None = None
    aws_conn_id: str | None = None

    def __post_init__(self) -> None:
        if bool(self.conn_id) == bool(self.cluster_name):
            raise ValueError("a cluster target is either a kubernetes connection id or an EKS cluster name")

    @property
    def is_eks(self) -> bool:
        return bool(self.cluster_name)

    def describe(self) -> str:
        return f"EKS cluster {self.cluster_name} ({self.region})" if self.is_eks else f"connection {self.conn_id}"

    def kubeconfig(self, namespace: str | None = None) -> dict[str, Any]:
        """The in-memory kubeconfig of an EKS target, credentials of the AWS connection included."""
        from eksml.cluster.connection import eks_kubeconfig

        if not self.is_eks:
            raise ValueError(f"{self.describe()} has no EKS kubeconfig")
        return eks_kubeconfig(self.cluster_name, self.region, aws_conn_id=self.aws_conn_id, namespace=namespace)

    def hook(self, namespace: str | None = None, hook_class: type[H] | None = None) -> H:
        """A ``KubernetesHook`` (or ``hook_class``, a subclass) for this target."""
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        cls = hook_class or KubernetesHook
        if not self.is_eks:
            return cls(conn_id=self.conn_id)
        # conn_id None: only this config, never kubernetes_default.
        return cls(conn_id=None, kubernetes_conn_id=None, config_dict=self.kubeconfig(namespace))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> ClusterTarget:
        return cls(**value)


def cluster_role_of(node_role: str) -> str:
    """Training-node workloads run on the training cluster; the rest on the serving one."""
    return TRAINING_CLUSTER if node_role == TRAIN_ROLE else INFERENCE_CLUSTER


def resolve_target(
    settings: Settings,
    *,
    cluster_role: str,
    cluster_name: str | None = None,
    kubernetes_conn_id: str | None = None,
    cluster: dict[str, Any] | None = None,
    aws_conn_id: str | None | FromSettings = FROM_SETTINGS,
) -> ClusterTarget:
    """The target of a task: explicit connection, else the run's cluster, else the settings' one.

    ``cluster`` holds the run's cluster overrides (name, region: the ``eks_cluster`` DAG's
    params), so the region is the one the cluster was made in. ``aws_conn_id`` defaults to the
    settings' connection; ``None`` signs with the worker's own AWS identity (instance role, IRSA).
    """
    conn = kubernetes_conn_id or settings.kubernetes_conn_id
    if conn:
        return ClusterTarget(conn_id=conn)
    from eksml.cluster.request import ClusterRequest, training_cluster_name

    req = ClusterRequest.from_settings(settings, **dict(cluster or {}))
    name = (cluster_name or "").strip()
    if not name:
        name = training_cluster_name(req) if cluster_role == TRAINING_CLUSTER else req.name
    aws = settings.aws_conn_id if aws_conn_id is FROM_SETTINGS else aws_conn_id
    return ClusterTarget(cluster_name=name, region=req.region, aws_conn_id=aws)
