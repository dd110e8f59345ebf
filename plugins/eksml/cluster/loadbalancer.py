"""The AWS Load Balancer Controller's part of a serving cluster, when ``settings.ingress`` is on.

The controller turns the inference Ingress (:func:`eksml.serving.manifests.render_ingress`)
into an ALB. Here: its CRDs (vendored and pinned, ``include/kubernetes/aws-load-balancer-controller``),
the ``alb`` IngressClass with IngressClassParams that fix the scheme and the allowed CIDRs for
every Ingress of the class (a namespace cannot widen them by annotation), the controller's
ServiceAccount with its IRSA role, and that role's policy: the controller's published policy
document of the same release. The controller itself (Deployment, RBAC, webhook Service and
webhook configurations) is its upstream Helm chart rendered at the pinned version and vendored
with a checksum (``tools/addon-charts/render.sh``); the cluster's name, region, VPC and node
role, and the webhook's certificate (:mod:`eksml.cluster.webhook_tls`, made at install time and
kept across runs) are filled in by the add-ons step (:func:`controller_objects`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from eksml.cluster.addons import ALB_CONTROLLER, addon_objects, parse_manifest, pinned_file, substitute
from eksml.cluster.iam import irsa_role_name
from eksml.cluster.meta import IRSA_ANNOTATION, LABELS
from eksml.cluster.webhook_tls import WebhookTLS, dns_names, kept_or_issued
from eksml.settings import Settings

NAME = "aws-load-balancer-controller"
NAMESPACE = "kube-system"
#: The AWS Load Balancer Controller release whose documented annotations the Ingress uses
#: (include/kubernetes/aws-load-balancer-controller/annotations-v3.5.0.md, vendored and pinned).
ALB_CONTROLLER_VERSION = "v3.5.0"
INGRESS_CLASS = "alb"
#: The controller name an IngressClass hands its Ingresses to (docs/guide/ingress/ingress_class.md).
CONTROLLER = "ingress.k8s.aws/alb"
#: The chart rendered at the pinned version (vendored, checksummed; a pinned file, not a
#: kustomization resource: without the add-ons step's values and Secret it cannot run).
CONTROLLER_MANIFEST = f"aws-load-balancer-controller-{ALB_CONTROLLER_VERSION}.yaml"
#: The chart's webhook Service and the TLS Secret its Deployment mounts (``namePrefix`` is the
#: chart name without ``-controller``).
WEBHOOK_SERVICE = "aws-load-balancer-webhook-service"
WEBHOOK_SECRET = "aws-load-balancer-tls"


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


def webhook_names() -> tuple[str, ...]:
    """The DNS names the API server calls the controller's webhooks by."""
    return dns_names(WEBHOOK_SERVICE, NAMESPACE)


def webhook_certificate(secret: Mapping[str, Any] | None, now: dt.datetime | None = None) -> tuple[WebhookTLS, bool]:
    """The webhook's certificate: the one in the cluster's Secret (``secret``, as read back, or
    ``None``) while it serves the webhook for more than 30 days, else a new one; and whether it
    was kept."""
    return kept_or_issued(secret, webhook_names(), common_name=NAME, now=now)


def controller_objects(
    *, cluster: str, region: str, vpc_id: str, node_role: str, tls: WebhookTLS
) -> list[dict[str, Any]]:
    """The controller's TLS Secret, then its pinned chart rendering with the cluster's values and
    ``tls``'s CA in every webhook's ``caBundle``. Applied after the CRDs and the ``alb``
    IngressClassParams (:func:`load_balancer_objects`): once the webhooks are registered, those
    objects are admitted only through the running controller."""
    path = pinned_file(ALB_CONTROLLER, CONTROLLER_MANIFEST)
    variables = {
        "CLUSTER_NAME": cluster,
        "AWS_REGION": region,
        "VPC_ID": vpc_id,
        "NODE_ROLE": node_role,
        "WEBHOOK_CA_BUNDLE": tls.ca_bundle,
    }
    rendered = parse_manifest(substitute(path.read_text(), variables, path.name), path.name)
    labels = {**LABELS, "app.kubernetes.io/name": NAME}
    return [tls.secret(WEBHOOK_SECRET, NAMESPACE, labels), *rendered]
