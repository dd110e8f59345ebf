"""Node groups as the EKS API reports them, compared with what the pipeline expects, and which
nodes can run GPU training right now.

Training pods select ``role=train`` and tolerate the ``nvidia.com/gpu`` taint; if a reused
cluster's node group was created with other labels or taints, the pods would stay
Pending for ever. Reading the EKS API (an independent source from eksctl's view) before
preparing the cluster turns that into an immediate, explicit error.

A GPU node is usable only when it is Ready *and* the NVIDIA device plugin has registered
its GPUs (``status.allocatable["nvidia.com/gpu"]``); a node that joined a minute ago
without the plugin running shows zero GPUs and would leave training pods Pending.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eksml.cluster.config import CLUSTER_ADMIN_POLICY, ManagedNodeGroup, NodegroupState
from eksml.cluster.node_contract import ACCELERATOR_LABEL, GPU_RESOURCE
from eksml.cluster.request import PROJECT_TAG

if TYPE_CHECKING:
    from eksml.settings import Settings

#: EKS API taint effects -> Kubernetes spelling.
_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}


def describe_nodegroups(cluster_name: str, region: str, aws_conn_id: str | None) -> dict[str, NodegroupState]:
    """Every managed node group of the cluster (EKS ListNodegroups + DescribeNodegroup)."""
    from airflow.providers.amazon.aws.hooks.eks import EksHook

    hook = EksHook(aws_conn_id=aws_conn_id, region_name=region)
    groups = {}
    for name in hook.list_nodegroups(clusterName=cluster_name):
        ng = hook.describe_nodegroup(clusterName=cluster_name, nodegroupName=name)["nodegroup"]
        scaling = ng.get("scalingConfig", {})
        groups[name] = NodegroupState(
            name=name,
            status=ng.get("status", "UNKNOWN"),
            min_size=scaling.get("minSize", 0),
            desired=scaling.get("desiredSize", 0),
            max_size=scaling.get("maxSize", 0),
            instance_types=tuple(ng.get("instanceTypes") or ()),
            labels=dict(ng.get("labels") or {}),
            taints=frozenset(
                (t["key"], t.get("value", ""), _EFFECTS.get(t["effect"], t["effect"])) for t in ng.get("taints") or []
            ),
            capacity_type=ng.get("capacityType", "ON_DEMAND"),
        )
    return groups


def cluster_vpc_id(cluster_name: str, region: str, aws_conn_id: str | None) -> str:
    """The VPC the cluster runs in (EKS DescribeCluster): what the AWS Load Balancer Controller is
    told, since the hop limit of 1 keeps it from the instance metadata."""
    from airflow.providers.amazon.aws.hooks.eks import EksHook

    cluster = EksHook(aws_conn_id=aws_conn_id, region_name=region).describe_cluster(name=cluster_name)["cluster"]
    return cluster["resourcesVpcConfig"]["vpcId"]


def nodegroup_drift(expected: list[ManagedNodeGroup], actual: dict[str, NodegroupState]) -> tuple[list[str], list[str]]:
    """(errors, warnings): errors break scheduling (missing group, labels, taints)."""
    errors, warnings = [], []
    for ng in expected:
        have = actual.get(ng.name)
        if have is None:
            errors.append(f"node group {ng.name} is missing (run the eks_cluster DAG with action=create)")
            continue
        for key, value in ng.labels.items():
            if have.labels.get(key) != value:
                # the accelerator label guides the autoscaler, not where pods go: a warning
                found = errors if key != ACCELERATOR_LABEL else warnings
                found.append(f"node group {ng.name}: label {key}={have.labels.get(key)!r}, expected {value!r}")
        want_taints = {(t.key, t.value, t.effect) for t in ng.taints}
        if want_taints != set(have.taints):
            errors.append(f"node group {ng.name}: taints {sorted(have.taints)}, expected {sorted(want_taints)}")
        if have.instance_types and not set(have.instance_types) <= set(ng.instance_types):
            warnings.append(
                f"node group {ng.name} runs {list(have.instance_types)}, requested {list(ng.instance_types)}"
            )
        if (have.capacity_type == "SPOT") != ng.spot:
            warnings.append(f"node group {ng.name} capacity is {have.capacity_type}, requested spot={ng.spot}")
    return errors, warnings


@contextlib.contextmanager
def cluster_admin_while(
    cluster_name: str,
    region: str,
    principal: str,
    aws_conn_id: str | None,
    log: Callable[[str], None] = print,
    *,
    creation_grant: bool = False,
) -> Iterator[None]:
    """Associate the cluster-admin access policy with ``principal`` for the block, then remove it.

    Installing add-ons needs cluster-scoped rights (CRDs, ClusterRoles, kube-system); running
    the pipeline needs only the Roles its group is bound to. So the pipeline principal is never
    cluster admin between add-on installs. A principal that holds the policy already keeps it,
    unless ``creation_grant`` says the project's ClusterConfig gave it for the create (the
    pipeline principal as creator: ``eksctl.request.access_entries``) and the cluster carries
    the project's tag: then it is removed after the block too. One without an access entry
    (mapped through ``aws-auth``) is left as it is.
    """
    from airflow.providers.amazon.aws.hooks.eks import EksHook
    from botocore.exceptions import ClientError

    from eksml.cluster.iam import partition_for

    client = EksHook(aws_conn_id=aws_conn_id, region_name=region).conn
    policy = CLUSTER_ADMIN_POLICY.format(partition=partition_for(region))
    try:
        held = client.list_associated_access_policies(clusterName=cluster_name, principalArn=principal)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        log(f"{principal} has no access entry on {cluster_name}: applying with its current rights")
        yield
        return
    if any(p.get("policyArn") == policy for p in held.get("associatedAccessPolicies", [])):
        if not (
            creation_grant and PROJECT_TAG in client.describe_cluster(name=cluster_name)["cluster"].get("tags", {})
        ):
            yield
            return
        log(f"{principal} holds the creation grant (cluster admin) on {cluster_name}: removed after the add-ons")
    else:
        client.associate_access_policy(
            clusterName=cluster_name, principalArn=principal, policyArn=policy, accessScope={"type": "cluster"}
        )
        log(f"cluster admin granted to {principal} on {cluster_name} for the add-ons")
    try:
        yield
    finally:
        client.disassociate_access_policy(clusterName=cluster_name, principalArn=principal, policyArn=policy)
        log(f"cluster admin removed from {principal} on {cluster_name}")


# --- GPU nodes ---------------------------------------------------------------------------
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


def deployment_available(api_client: Any, name: str, namespace: str) -> bool:
    """Whether the Deployment exists with at least one available replica."""
    from kubernetes.client import AppsV1Api
    from kubernetes.client.exceptions import ApiException

    try:
        deployment = AppsV1Api(api_client).read_namespaced_deployment(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return bool(deployment.status and (deployment.status.available_replicas or 0) >= 1)


def autoscaler_available(api_client: Any) -> bool:
    """Whether the cluster autoscaler Deployment exists with at least one available replica."""
    from eksml.cluster.autoscaler import NAME, NAMESPACE

    return deployment_available(api_client, NAME, NAMESPACE)


def unschedulable_reason(pod: Any) -> str | None:
    """The scheduler's message when ``pod`` is Pending because no node can take it, else None."""
    status = _get(pod, "status")
    if _get(status, "phase") != "Pending":
        return None
    for cond in _get(status, "conditions") or []:
        if _get(cond, "type") == "PodScheduled" and _get(cond, "status") == "False":
            return _get(cond, "message") or _get(cond, "reason") or "unschedulable"
    return None


def describe_gpu_group(
    cluster_name: str,
    region: str,
    aws_conn_id: str | None,
    group_name: str,
    instance_types: tuple[str, ...],
    spot: bool,
) -> tuple[Any, str, str]:
    """(the node group as EKS reports it or None, "node group ... (min, desired, max)", quota hint)."""
    from eksml.cluster.instance_types import ec2_quota_for

    group = describe_nodegroups(cluster_name, region, aws_conn_id).get(group_name)
    instance = (group.instance_types if group and group.instance_types else instance_types)[0]
    code, quota = ec2_quota_for(instance, spot=spot)
    where = f"node group {group_name} of cluster {cluster_name}" + (
        f" (min {group.min_size}, desired {group.desired}, max {group.max_size})" if group else ""
    )
    return group, where, f"EC2 quota {code} '{quota}' in {region} must cover the vCPUs of the {instance} nodes"


def describe_configured_gpu_group(
    settings: Settings, cluster_name: str, region: str, aws_conn_id: str | None
) -> tuple[Any, str, str]:
    """:func:`describe_gpu_group` for the GPU node group the settings ask for: what a workload
    that waits for a GPU node asks of the cluster, without knowing how the cluster is requested."""
    from eksml.cluster.request import ClusterRequest, train_node_group

    group = train_node_group(ClusterRequest.from_settings(settings))
    return describe_gpu_group(cluster_name, region, aws_conn_id, group.name, group.instance_types, group.spot)
