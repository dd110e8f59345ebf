"""Kubernetes objects the pipeline owns on an EKS cluster, as plain dicts.

Namespaces, the pods' ServiceAccounts (annotated with their IRSA role), the
least-privilege Roles the pipeline acts through, and the cluster autoscaler. eksctl
creates the IAM roles (``roleOnly``); these objects are applied by
:class:`~eksml.cluster.operators.ClusterAddonsOperator` and rendered offline by
``python -m eksml.render --profile aws``.
"""

from __future__ import annotations

import os
from typing import Any

from eksml.cluster.autoscaler import NAME as AUTOSCALER_NAME
from eksml.cluster.autoscaler import NAMESPACE as AUTOSCALER_NAMESPACE
from eksml.cluster.autoscaler import autoscaler_objects
from eksml.cluster.iam import account_from_arn, role_arn
from eksml.cluster.meta import IRSA_ANNOTATION, LABELS
from eksml.cluster.node_contract import (
    CLUSTER_ROLES,
    INFERENCE_CLUSTER,
    INFERENCE_ROLE,
    SHARED_CLUSTER,
    SYSTEM_ROLE,
    TRAINING_CLUSTER,
)
from eksml.cluster.request import (
    KARPENTER_SCALER,
    PIPELINE_GROUP,
    ClusterRequest,
    autoscaler_role_name,
    cluster_name_for_role,
    inference_role_name,
    training_role_name,
)
from eksml.settings import Settings, load_settings

PIPELINE_ROLE = "eksml-pipeline"
#: Pod Security admission for the pipeline's namespaces: every pod must meet ``restricted``
#: (non-root, no privilege escalation, no capabilities, RuntimeDefault seccomp), so a pod
#: spec that drifts from that is refused by the API server instead of running.
POD_SECURITY_LABELS = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}

_RW = ["create", "get", "list", "watch", "patch", "update", "delete"]
_RO = ["get", "list", "watch"]

#: What the pipeline does in the training namespace: run pods (KubernetesPodOperator) and
#: MPIJobs, read their logs and events. No secrets, no exec, nothing cluster-wide.
TRAINING_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list", "watch", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": _RO},
    {"apiGroups": ["kubeflow.org"], "resources": ["mpijobs"], "verbs": _RW},
    {"apiGroups": ["kubeflow.org"], "resources": ["mpijobs/status"], "verbs": ["get"]},
    # One PodDisruptionBudget per running job, so no scale-down or drain evicts its pods.
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["create", "get", "delete"]},
]
#: What evaluation does on the serving cluster of the dedicated topology: its pods run in the
#: training namespace there (node role ``inference``), under the training service account, each
#: with its PodDisruptionBudget like every job pod; no MPIJobs.
EVALUATION_RULES = [rule for rule in TRAINING_RULES if rule["apiGroups"] != ["kubeflow.org"]]
#: What it does in the serving namespace: roll out the model server and smoke-test it
#: through the API server's service proxy.
SERVING_RULES = [
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": _RW},
    {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": _RO},
    {"apiGroups": [""], "resources": ["services"], "verbs": _RW},
    {"apiGroups": [""], "resources": ["services/proxy"], "verbs": ["get", "create"]},
    # The server's PodDisruptionBudget, autoscaler and (when the settings ask) its ALB Ingress.
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": _RW},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": _RW},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": _RW},
    {"apiGroups": [""], "resources": ["pods"], "verbs": _RO},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": _RO},
]


#: What the GPU capacity check reads before training: the GPU nodes (cluster-scoped, so a
#: ClusterRole; read only) and whether the cluster autoscaler runs (its Deployment, by name).
NODE_READER_RULES = [{"apiGroups": [""], "resources": ["nodes"], "verbs": _RO}]
AUTOSCALER_READER_RULES = [
    {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": [AUTOSCALER_NAME], "verbs": ["get"]},
]


def _meta(name: str, namespace: str | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": dict(LABELS)}
    if namespace:
        meta["namespace"] = namespace
    meta.update(extra)
    return meta


def namespace(name: str) -> dict[str, Any]:
    meta = _meta(name)
    meta["labels"].update(POD_SECURITY_LABELS)
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def service_account(name: str, ns: str, irsa_role_arn: str) -> dict[str, Any]:
    """Pod identity: the IRSA annotation gives AWS access; no Kubernetes API token is mounted."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(name, ns, annotations={IRSA_ANNOTATION: irsa_role_arn}),
        "automountServiceAccountToken": False,
    }


def pipeline_rbac(ns: str, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Role + RoleBinding for the group the pipeline's IAM principal maps to (access entry)."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(PIPELINE_ROLE, ns),
        "rules": rules,
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(PIPELINE_ROLE, ns),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": PIPELINE_ROLE},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": PIPELINE_GROUP}],
    }
    return [role, binding]


def pipeline_node_reader(extra_rules: list[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """ClusterRole + ClusterRoleBinding: the pipeline's group may read nodes (and what
    ``extra_rules`` name), nothing else cluster-wide."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta(PIPELINE_ROLE),
        "rules": [*NODE_READER_RULES, *extra_rules],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _meta(PIPELINE_ROLE),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": PIPELINE_ROLE},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": PIPELINE_GROUP}],
    }
    return [role, binding]


def default_account_id(settings: Settings) -> str:
    """The AWS account the project lives in, from ``AWS_ACCOUNT_ID`` or the SageMaker role ARN.

    Used only for offline rendering; the add-ons operator asks STS for the real account.
    """
    account = os.environ.get("AWS_ACCOUNT_ID") or account_from_arn(settings.sagemaker_role_arn)
    if not account:
        raise ValueError("cannot tell the AWS account id: set AWS_ACCOUNT_ID")
    return account


def render_kubernetes_objects(
    settings: Settings | None = None,
    *,
    cluster_role: str = SHARED_CLUSTER,
    account_id: str | None = None,
    request: ClusterRequest | None = None,
    cluster_name: str | None = None,
) -> list[dict[str, Any]]:
    """Every object the pipeline applies to a cluster of ``cluster_role``, in apply order.

    ``all`` is the shared cluster; ``training`` / ``inference`` are the two clusters of the
    dedicated-training-cluster topology. ``cluster_name`` overrides the name derived from
    settings (an ephemeral cluster); it determines the IRSA role names eksctl created.
    """
    if cluster_role not in CLUSTER_ROLES:
        raise ValueError(f"cluster_role must be one of {CLUSTER_ROLES}, got {cluster_role!r}")
    s = settings or load_settings()
    req = request or ClusterRequest.from_settings(s)
    account = account_id or default_account_id(s)
    training = cluster_role in (SHARED_CLUSTER, TRAINING_CLUSTER)
    inference = cluster_role in (SHARED_CLUSTER, INFERENCE_CLUSTER)
    cluster = cluster_name or cluster_name_for_role(req, cluster_role)
    # Where the cluster's own controllers run (autoscaler, Karpenter): never on a GPU node.
    system_role = SYSTEM_ROLE if cluster_role == TRAINING_CLUSTER else INFERENCE_ROLE

    # Evaluation pods run where serving does, in the training namespace and service account
    # (WorkloadPodOperator), so every topology's clusters get those; only the training one gets
    # MPIJobs and the GPU capacity check's rights.
    objects: list[dict[str, Any]] = [namespace(req.namespace)]
    if inference:
        objects.append(namespace(req.inference_namespace))
    objects.append(
        service_account(
            req.training_service_account,
            req.namespace,
            role_arn(account, training_role_name(cluster, req), req.region),
        )
    )
    if not training:
        objects.extend(pipeline_rbac(req.namespace, EVALUATION_RULES))
    if training:
        objects.extend(pipeline_rbac(req.namespace, TRAINING_RULES))
        # The GPU capacity check runs against the cluster that trains.
        cluster_rules, controller_rules = [], []
        if req.node_scaler == KARPENTER_SCALER:
            from eksml.cluster.karpenter import capacity_reader_rules

            cluster_rules, controller_rules = capacity_reader_rules()
        objects.extend(pipeline_node_reader(cluster_rules))
        objects.extend(pipeline_rbac(AUTOSCALER_NAMESPACE, AUTOSCALER_READER_RULES + controller_rules))
    if inference:
        objects.append(
            service_account(
                req.inference_service_account,
                req.inference_namespace,
                role_arn(account, inference_role_name(cluster, req), req.region),
            )
        )
        objects.extend(pipeline_rbac(req.inference_namespace, SERVING_RULES))
    if training and req.node_scaler == KARPENTER_SCALER:
        from eksml.cluster.karpenter import karpenter_objects

        objects.extend(karpenter_objects(req, cluster, account_id=account, controller_node_role=system_role))
    if training and req.fsx_lustre:
        from eksml.cluster.fsx import fsx_objects

        objects.extend(fsx_objects(s))
    if inference and req.ingress:
        from eksml.cluster.loadbalancer import controller_role_name, load_balancer_objects

        objects.extend(
            load_balancer_objects(s, role_arn(account, controller_role_name(cluster, req.region), req.region))
        )
    objects.extend(
        autoscaler_objects(
            cluster_name=cluster,
            region=req.region,
            kubernetes_version=req.kubernetes_version,
            role_arn=role_arn(account, autoscaler_role_name(cluster, req.region), req.region),
            node_role=system_role,
        )
    )
    return objects
