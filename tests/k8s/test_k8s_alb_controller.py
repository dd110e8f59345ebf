"""The AWS Load Balancer Controller, as the add-ons step installs it, admitted by a real API server.

Its CRDs, the ``alb`` IngressClass and IngressClassParams, its IRSA ServiceAccount, then its
vendored chart rendering with the cluster's values and the webhook certificate made at install
time (the TLS Secret, RBAC, webhook Service, Deployment and webhook configurations), all applied
by server-side apply as the cluster admin; a second run reads the Secret back and keeps it.

On a control plane of its own: once the webhooks are registered (``failurePolicy: Fail``) with
no controller behind them (its image cannot be pulled here, so the Deployment never becomes
Available and is not waited for), the API server refuses every Ingress, TargetGroupBinding and
IngressClassParams it is asked to admit; the shared planes of the other tests never see them.
"""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ACCOUNT_ID, aws_settings
from k8s_controlplane import ControlPlane, remove_workdir
from kubernetes import client

from eksml.cluster.apply import ApplyHook, apply_objects
from eksml.cluster.loadbalancer import (
    NAME,
    NAMESPACE,
    WEBHOOK_SECRET,
    controller_objects,
    load_balancer_objects,
    webhook_certificate,
)
from eksml.cluster.node_contract import INFERENCE_ROLE

pytestmark = pytest.mark.k8s

VALUES = {"cluster": "eksml", "region": "us-west-2", "vpc_id": "vpc-0a1b2c3d4e5f60718", "node_role": INFERENCE_ROLE}
ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/eksml-us-west-2-aws-load-balancer-controller"
WEBHOOK_CONFIGS = ("mutatingwebhookconfigurations", "validatingwebhookconfigurations")


@pytest.fixture(scope="module")
def alb_plane(k8s_bin_dir: Path) -> Iterator[ControlPlane]:
    workdir = Path(tempfile.mkdtemp(prefix="eksml-k8s-alb-"))
    plane = ControlPlane(name="alb", bin_dir=k8s_bin_dir, workdir=workdir)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()
        remove_workdir(workdir)


def _hook(plane: ControlPlane) -> ApplyHook:
    return ApplyHook(conn_id=None, kubernetes_conn_id=None, config_file=str(plane.kubeconfig("admin")))


def _controller(hook: ApplyHook):
    """What the add-ons step adds at install time: the Secret read back, kept or made."""
    tls, kept = webhook_certificate(hook.read_object("v1", "Secret", WEBHOOK_SECRET, NAMESPACE))
    return tls, kept, controller_objects(**VALUES, tls=tls)


@pytest.fixture(scope="module")
def installed(alb_plane: ControlPlane):
    hook = _hook(alb_plane)
    tls, kept, controller = _controller(hook)
    settings = aws_settings("unused", ingress=True, ingress_tls=False)
    applied = apply_objects(
        alb_plane.api_client("admin"), [*load_balancer_objects(settings, ROLE), *controller], log=lambda _m: None
    )
    return alb_plane, tls, kept, applied


def test_the_api_server_admits_the_whole_controller_set(installed):
    plane, tls, kept, applied = installed
    assert not kept  # the first run makes the certificate
    assert {
        "Secret/kube-system/aws-load-balancer-tls",
        "ClusterRole/aws-load-balancer-controller-role",
        "Service/kube-system/aws-load-balancer-webhook-service",
        "Deployment/kube-system/aws-load-balancer-controller",
        "MutatingWebhookConfiguration/aws-load-balancer-webhook",
        "ValidatingWebhookConfiguration/aws-load-balancer-webhook",
        "IngressClassParams/alb",
        "ServiceAccount/kube-system/aws-load-balancer-controller",
    } <= set(applied)
    api = plane.api_client("admin")
    deployment = client.AppsV1Api(api).read_namespaced_deployment(NAME, NAMESPACE)
    pod = deployment.spec.template.spec
    assert pod.service_account_name == NAME and pod.node_selector == {"role": INFERENCE_ROLE}
    assert "--aws-vpc-id=vpc-0a1b2c3d4e5f60718" in pod.containers[0].args
    secret = client.CoreV1Api(api).read_namespaced_secret(WEBHOOK_SECRET, NAMESPACE)
    assert secret.type == "kubernetes.io/tls" and base64.b64decode(secret.data["ca.crt"]) == tls.ca_pem
    admission = client.AdmissionregistrationV1Api(api)
    hooks = [
        *admission.read_mutating_webhook_configuration("aws-load-balancer-webhook").webhooks,
        *admission.read_validating_webhook_configuration("aws-load-balancer-webhook").webhooks,
    ]
    assert hooks and {h.client_config.ca_bundle for h in hooks} == {secret.data["ca.crt"]}


def test_the_registered_webhooks_stand_between_the_api_and_an_ingress(installed):
    """The API server calls the controller's webhook for an Ingress: with no controller running,
    it refuses it (why these webhooks live on a control plane of their own here)."""
    plane, *_ = installed
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "webhook-probe"},
        "spec": {"ingressClassName": "alb", "defaultBackend": {"service": {"name": "x", "port": {"number": 80}}}},
    }
    with pytest.raises(client.ApiException) as refused:
        client.NetworkingV1Api(plane.api_client("admin")).create_namespaced_ingress("default", ingress, dry_run="All")
    assert "vingress.elbv2.k8s.aws" in refused.value.body


def test_a_second_run_keeps_the_certificate_and_rewrites_nothing(installed):
    plane, tls, _kept, _applied = installed
    core = client.CoreV1Api(plane.api_client("admin"))
    before = core.read_namespaced_secret(WEBHOOK_SECRET, NAMESPACE).metadata.resource_version
    again, kept, controller = _controller(_hook(plane))
    assert kept and again == tls
    # The controller's own objects are not what its webhooks admit: they apply with none running.
    apply_objects(plane.api_client("admin"), controller, log=lambda _m: None)
    assert core.read_namespaced_secret(WEBHOOK_SECRET, NAMESPACE).metadata.resource_version == before
