"""Cluster autoscaler for EKS, written for this project (auto-discovery of tagged ASGs).

The train node group runs with ``minSize: 0``; the autoscaler adds GPU nodes when
training pods are pending and removes them when idle. It discovers the groups by the
``k8s.io/cluster-autoscaler/*`` tags that :mod:`eksml.cluster.config` puts on them, and
learns a group's labels, taint and GPU count from its node-template tags, so it can
scale a group up from zero. AWS access comes from the IRSA role eksctl creates with the
``autoScaler`` well-known policy.
"""

from __future__ import annotations

from typing import Any

from eksml.cluster.node_contract import INFERENCE_ROLE, node_selector, not_evictable
from eksml.errors import InvalidInput

NAME = "cluster-autoscaler"
NAMESPACE = "kube-system"

#: Autoscaler release per Kubernetes minor (the autoscaler's minor must match the cluster's).
#: Tags verified against kubernetes/autoscaler release notes and published manifests.
IMAGES: dict[str, str] = {
    "1.30": "registry.k8s.io/autoscaling/cluster-autoscaler:v1.30.2",
    "1.31": "registry.k8s.io/autoscaling/cluster-autoscaler:v1.31.1",
    "1.32": "registry.k8s.io/autoscaling/cluster-autoscaler:v1.32.3",
    "1.33": "registry.k8s.io/autoscaling/cluster-autoscaler:v1.33.6",
    "1.34": "registry.k8s.io/autoscaling/cluster-autoscaler:v1.34.5",
    "1.35": "registry.k8s.io/autoscaling/cluster-autoscaler:v1.35.0",
}

_RO = ["get", "list", "watch"]
CLUSTER_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["events", "endpoints"], "verbs": ["create", "patch"]},
    {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
    {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["update"]},
    {"apiGroups": [""], "resources": ["endpoints"], "resourceNames": [NAME], "verbs": ["get", "update"]},
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch", "update"]},
    {
        "apiGroups": [""],
        "resources": [
            "namespaces",
            "pods",
            "services",
            "replicationcontrollers",
            "persistentvolumeclaims",
            "persistentvolumes",
        ],
        "verbs": _RO,
    },
    {"apiGroups": ["apps"], "resources": ["statefulsets", "replicasets", "daemonsets"], "verbs": _RO},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["list", "watch"]},
    {
        "apiGroups": ["storage.k8s.io"],
        "resources": ["storageclasses", "csinodes", "csidrivers", "csistoragecapacities", "volumeattachments"],
        "verbs": _RO,
    },
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": _RO},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": [NAME],
        "verbs": ["get", "update"],
    },
]
NAMESPACE_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "list", "watch"]},
    {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": ["cluster-autoscaler-status"],
        "verbs": ["get", "update", "delete", "watch"],
    },
]


class AutoscalerVersionError(InvalidInput):
    pass


def image_for(kubernetes_version: str) -> str:
    try:
        return IMAGES[kubernetes_version]
    except KeyError:
        raise AutoscalerVersionError(
            f"no pinned cluster-autoscaler for Kubernetes {kubernetes_version}; pinned: {', '.join(IMAGES)}"
        ) from None


def autoscaler_objects(
    *, cluster_name: str, region: str, kubernetes_version: str, role_arn: str, node_role: str = INFERENCE_ROLE
) -> list[dict[str, Any]]:
    """ServiceAccount, RBAC and Deployment; the pod runs on the untainted ``role=<node_role>`` nodes."""
    labels = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "eksml"}
    meta = {"name": NAME, "namespace": NAMESPACE, "labels": labels}
    rbac = "rbac.authorization.k8s.io/v1"
    subject = [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]
    args = [
        "./cluster-autoscaler",
        "--cloud-provider=aws",
        f"--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/{cluster_name}",
        "--balance-similar-node-groups",
        "--expander=least-waste",
        "--skip-nodes-with-system-pods=false",
        "--scale-down-unneeded-time=10m",
        "--v=2",
    ]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": not_evictable(),
                },
                "spec": {
                    "serviceAccountName": NAME,
                    "priorityClassName": "system-cluster-critical",
                    "nodeSelector": node_selector(node_role),
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65534,
                        "fsGroup": 65534,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": NAME,
                            "image": image_for(kubernetes_version),
                            "command": args,
                            "env": [{"name": "AWS_REGION", "value": region}],
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "600Mi"},
                                "limits": {"memory": "600Mi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {**meta, "annotations": {"eks.amazonaws.com/role-arn": role_arn}},
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRole",
            "metadata": {"name": NAME, "labels": labels},
            "rules": CLUSTER_RULES,
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": NAME, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
            "subjects": subject,
        },
        {"apiVersion": rbac, "kind": "Role", "metadata": meta, "rules": NAMESPACE_RULES},
        {
            "apiVersion": rbac,
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
            "subjects": subject,
        },
        deployment,
    ]
