"""The AWS Load Balancer Controller's part of a serving cluster, when ``settings.ingress`` is on.

The controller turns the inference Ingress (:func:`eksml.serving.manifests.render_ingress`)
into an ALB. Here: its CRDs (vendored and pinned, ``include/kubernetes/aws-load-balancer-controller``),
the ``alb`` IngressClass with IngressClassParams that fix the scheme and the allowed CIDRs for
every Ingress of the class (a namespace cannot widen them by annotation), the controller's
ServiceAccount with its IRSA role, and that role's policy: the controller's published policy
document of the same release. The controller's Deployment is the upstream Helm chart at the
pinned version (docs/aws.md "Production integrations").
"""

from __future__ import annotations

import json
from typing import Any

from eksml.cluster.addons import ALB_CONTROLLER, addon_objects, pinned_file
from eksml.cluster.iam import irsa_role_name
from eksml.cluster.meta import IRSA_ANNOTATION, LABELS
from eksml.settings import Settings

NAME = "aws-load-balancer-controller"
NAMESPACE = "kube-system"
#: The AWS Load Balancer Controller release whose documented annotations the Ingress uses
#: (include/kubernetes/aws-load-balancer-controller/annotations-v3.5.0.md, vendored and pinned).
ALB_CONTROLLER_VERSION = "v3.5.0"
INGRESS_CLASS = "alb"
#: The controller name an IngressClass hands its Ingresses to (docs/guide/ingress/ingress_class.md).
CONTROLLER = "ingress.k8s.aws/alb"


def controller_policy() -> dict[str, Any]:
    """The controller's IAM policy as its release publishes it (checksum verified)."""
    return json.loads(pinned_file(ALB_CONTROLLER, f"iam-policy-{ALB_CONTROLLER_VERSION}.json").read_text())


def controller_role_name(cluster: str, region: str) -> str:
    return irsa_role_name(cluster, region, NAME)[:64]


def ingress_class_objects(settings: Settings) -> list[dict[str, Any]]:
    """IngressClassParams + the ``alb`` IngressClass that points at them."""
    params: dict[str, Any] = {"scheme": settings.ingress_scheme, "ipAddressType": "ipv4"}
    if settings.ingress_inbound_cidrs:
        params["inboundCIDRs"] = list(settings.ingress_inbound_cidrs)
    return [
        {
            "apiVersion": "elbv2.k8s.aws/v1beta1",
            "kind": "IngressClassParams",
            "metadata": {"name": INGRESS_CLASS, "labels": dict(LABELS)},
            "spec": params,
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": INGRESS_CLASS, "labels": dict(LABELS)},
            "spec": {
                "controller": CONTROLLER,
                "parameters": {"apiGroup": "elbv2.k8s.aws", "kind": "IngressClassParams", "name": INGRESS_CLASS},
            },
        },
    ]


def load_balancer_objects(settings: Settings, role_arn: str) -> list[dict[str, Any]]:
    """CRDs, IngressClass and the controller's ServiceAccount, in apply order."""
    service_account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": dict(LABELS),
            "annotations": {IRSA_ANNOTATION: role_arn},
        },
    }
    return [*addon_objects(ALB_CONTROLLER), *ingress_class_objects(settings), service_account]
