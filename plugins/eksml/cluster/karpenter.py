"""Karpenter, the job-based alternative to the cluster autoscaler for GPU training nodes.

With ``settings.node_scaler = "karpenter"`` the training nodes come from a NodePool instead
of the ``ng-train`` node group: Karpenter launches a node of the requested GPU types when a
training pod is pending (from zero, no node group to size) and, with
``consolidationPolicy: WhenEmpty``, removes it only once no pod of a job runs on it; every
training pod also carries ``karpenter.sh/do-not-disrupt`` (:func:`eksml.cluster.node_contract.not_evictable`),
so expiry and drift wait for the job too. The EC2NodeClass keeps the nodes as the node
groups are: private subnets, IMDSv2 with a hop limit of 1, an encrypted gp3 root volume.

Rendered for Karpenter's v1 API, whose CRDs and controller (its Helm chart rendered at v1.15.2)
are vendored in ``include/kubernetes/karpenter``. The controller's IAM role, the nodes' role and
the interruption queue are the pipeline's too (:mod:`eksml.cluster.karpenter_aws`); docs/aws.md
"Production integrations".
"""

from __future__ import annotations

from typing import Any

from eksml.cluster.addons import KARPENTER, addon_objects
from eksml.cluster.karpenter_aws import controller_role_name, interruption_queue_name, node_role_name
from eksml.cluster.meta import LABELS
from eksml.cluster.node_contract import (
    GPU_RESOURCE,
    GPU_TAINT_EFFECT,
    GPU_TAINT_KEY,
    GPU_TAINT_VALUE,
    NODE_ROLE_LABEL,
    TRAIN_ROLE,
)
from eksml.cluster.request import KARPENTER_DISCOVERY_TAG, ClusterRequest

KARPENTER_VERSION = "1.15.2"
NODE_POOL = "gpu-train"
#: The controller's Deployment (the chart's release name and namespace, as in Karpenter's getting-started guide).
CONTROLLER = "karpenter"
CONTROLLER_NAMESPACE = "kube-system"
#: eksctl tags the private subnets it creates with this (load balancer discovery); nodes go there only.
PRIVATE_SUBNET_TAG = "kubernetes.io/role/internal-elb"


def node_class(cluster: str, volume_gib: int) -> dict[str, Any]:
    discovery = {KARPENTER_DISCOVERY_TAG: cluster}
    return {
        "apiVersion": "karpenter.k8s.aws/v1",
        "kind": "EC2NodeClass",
        "metadata": {"name": NODE_POOL, "labels": dict(LABELS)},
        "spec": {
            # spec.role is the nodes' IAM role (not the node-role label of eksml.cluster.node_contract).
            **dict(role=node_role_name(cluster)),
            # The AL2023 alias resolves to the accelerated (NVIDIA) AMI for GPU instance types.
            "amiSelectorTerms": [{"alias": "al2023@latest"}],
            "subnetSelectorTerms": [{"tags": {**discovery, PRIVATE_SUBNET_TAG: "1"}}],
            "securityGroupSelectorTerms": [{"tags": discovery}],
            "associatePublicIPAddress": False,
            "metadataOptions": {
                "httpEndpoint": "enabled",
                "httpTokens": "required",
                "httpPutResponseHopLimit": 1,
                "httpProtocolIPv6": "disabled",
            },
            "blockDeviceMappings": [
                {
                    "deviceName": "/dev/xvda",
                    "ebs": {"volumeSize": f"{volume_gib}Gi", "volumeType": "gp3", "encrypted": True},
                }
            ],
        },
    }


def node_pool(req: ClusterRequest, gpus_per_node: int) -> dict[str, Any]:
    capacity = ["spot", "on-demand"] if req.spot else ["on-demand"]
    max_nodes = req.train_max_size
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": NODE_POOL, "labels": dict(LABELS)},
        "spec": {
            "template": {
                "metadata": {"labels": {NODE_ROLE_LABEL: TRAIN_ROLE}},
                "spec": {
                    "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": NODE_POOL},
                    "taints": [{"key": GPU_TAINT_KEY, "value": GPU_TAINT_VALUE, "effect": GPU_TAINT_EFFECT}],
                    "requirements": [
                        {
                            "key": "node.kubernetes.io/instance-type",
                            "operator": "In",
                            "values": list(req.train_instance_types),
                        },
                        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": capacity},
                    ],
                    "expireAfter": "720h",
                },
            },
            # Never more GPUs than the node group would have had; nodes go only when empty.
            "limits": {GPU_RESOURCE: str(max_nodes * gpus_per_node)},
            "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "10m"},
        },
    }


def karpenter_objects(
    req: ClusterRequest, cluster: str, *, account_id: str, controller_node_role: str
) -> list[dict[str, Any]]:
    """Karpenter's CRDs and controller (pinned, vendored), the EC2NodeClass and the GPU NodePool,
    in apply order. The controller runs on the ``role=<controller_node_role>`` nodes (never on a
    node it launched) with its IRSA role, the region given (the hop limit of 1 keeps it from the
    instance metadata) and the cluster's interruption queue."""
    from eksml.cluster.iam import role_arn
    from eksml.cluster.request import train_node_group

    train = train_node_group(req)
    variables = {
        "CLUSTER_NAME": cluster,
        "AWS_REGION": req.region,
        "KARPENTER_ROLE_ARN": role_arn(account_id, controller_role_name(cluster), req.region),
        "NODE_ROLE": controller_node_role,
        "INTERRUPTION_QUEUE": interruption_queue_name(cluster),
    }
    return [
        *addon_objects(KARPENTER, variables),
        node_class(cluster, train.volume_size),
        node_pool(req, train.gpus_per_node),
    ]


def capacity_reader_rules() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What the GPU capacity check reads with Karpenter: the GPU NodePool (cluster-scoped) and
    the controller's Deployment (in its namespace), each by name, read only."""
    pool = {"apiGroups": ["karpenter.sh"], "resources": ["nodepools"], "resourceNames": [NODE_POOL], "verbs": ["get"]}
    controller = {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": [CONTROLLER], "verbs": ["get"]}
    return [pool], [controller]


def node_pool_gpu_limit(api_client: Any) -> int | None:
    """The GPUs the cluster's GPU NodePool may launch in all (its ``limits``), or None when the
    NodePool is missing. A NodePool without a GPU limit counts as unlimited (-1)."""
    from kubernetes.client import CustomObjectsApi
    from kubernetes.client.exceptions import ApiException
    from kubernetes.utils import parse_quantity

    try:
        pool = CustomObjectsApi(api_client).get_cluster_custom_object("karpenter.sh", "v1", "nodepools", NODE_POOL)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    limit = ((pool.get("spec") or {}).get("limits") or {}).get(GPU_RESOURCE)
    return -1 if limit is None else int(parse_quantity(limit))
