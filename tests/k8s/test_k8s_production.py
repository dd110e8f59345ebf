"""The aws profile's production integrations admitted by a real API server.

The AWS Load Balancer Controller's pinned CRDs (IngressClassParams, TargetGroupBinding) and
the ``alb`` IngressClass are applied as the add-ons step applies them (cluster admin); the
pipeline identity then applies the inference objects (Deployment, Service,
PodDisruptionBudget, HorizontalPodAutoscaler, Ingress with HTTPS and Cognito sign-in) through
the Roles the project renders, and the API server validates each against its schema. What
this does not prove: that the controller, which is not running here, builds the ALB the
annotations describe (they are checked against the controller's own reference instead,
tests/unit/test_serving_manifests.py).
"""

from __future__ import annotations

import pytest
from conftest import ACCOUNT_ID, PIPELINE, aws_settings
from kubernetes import client
from kubernetes.dynamic import DynamicClient

from eksml.cluster.loadbalancer import load_balancer_objects
from eksml.kubernetes.hooks import ROLLOUT_KINDS, DeploymentHook, apply_objects
from eksml.serving.manifests import render_inference_objects, resource_name

pytestmark = pytest.mark.k8s

NS = "ml-serving"
CERT = "arn:aws:acm:us-west-2:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
POOL = "arn:aws:cognito-idp:us-west-2:123456789012:userpool/us-west-2_AbCdEf123"
URI = "s3://eksml-bucket/store/models/fashion-mnist/v1"


def _https_settings(conn: str):
    return aws_settings(
        conn,
        ingress=True,
        ingress_certificate_arn=CERT,
        ingress_host="models.example.com",
        ingress_auth="cognito",
        ingress_cognito_user_pool_arn=POOL,
        ingress_cognito_client_id="client123",
        ingress_cognito_domain="eksml-login",
    )


@pytest.fixture(scope="module")
def alb_ready(prepared_cluster):
    """The controller's CRDs, IngressClassParams and IngressClass, applied in one go by the admin."""
    role = f"arn:aws:iam::{ACCOUNT_ID}:role/eksml-aws-load-balancer-controller"
    apply_objects(
        prepared_cluster.api_client("admin"),
        load_balancer_objects(_https_settings("unused"), role),
        log=lambda _m: None,
    )
    return prepared_cluster


def test_controller_crds_are_established_and_the_alb_class_uses_its_params(alb_ready):
    api = alb_ready.api_client("admin")
    ext = client.ApiextensionsV1Api(api)
    for name in ("ingressclassparams.elbv2.k8s.aws", "targetgroupbindings.elbv2.k8s.aws"):
        crd = ext.read_custom_resource_definition(name)
        assert {c.type: c.status for c in crd.status.conditions}["Established"] == "True"
    ingress_class = client.NetworkingV1Api(api).read_ingress_class("alb")
    assert ingress_class.spec.controller == "ingress.k8s.aws/alb"
    params = client.CustomObjectsApi(api).get_cluster_custom_object(
        "elbv2.k8s.aws", "v1beta1", "ingressclassparams", "alb"
    )
    assert params["spec"]["scheme"] == "internal"


def test_a_target_group_binding_is_validated_by_the_pinned_schema(alb_ready):
    objects = client.CustomObjectsApi(alb_ready.api_client("admin"))
    body = {
        "apiVersion": "elbv2.k8s.aws/v1beta1",
        "kind": "TargetGroupBinding",
        "metadata": {"name": "schema-probe"},
        "spec": {
            "serviceRef": {"name": "fashion-mnist-inference", "port": 80},
            "targetGroupARN": "arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/x/0123456789abcdef",
            "targetType": "ip",
        },
    }
    objects.create_namespaced_custom_object("elbv2.k8s.aws", "v1beta1", NS, "targetgroupbindings", body, dry_run="All")
    wrong = {**body, "spec": {**body["spec"], "targetType": "pod"}}  # not an enum value of the schema
    with pytest.raises(client.ApiException) as refused:
        objects.create_namespaced_custom_object(
            "elbv2.k8s.aws", "v1beta1", NS, "targetgroupbindings", wrong, dry_run="All"
        )
    assert refused.value.status == 422


def test_pipeline_applies_the_https_ingress_pdb_and_autoscaler(alb_ready):
    settings = _https_settings("unused")
    objects = render_inference_objects(settings, URI, "v1")
    assert [o["kind"] for o in objects][-3:] == ["PodDisruptionBudget", "HorizontalPodAutoscaler", "Ingress"]
    hook = DeploymentHook(conn_id=None, kubernetes_conn_id=None, config_file=str(alb_ready.kubeconfig(PIPELINE)))
    hook.apply_objects(objects, namespace=NS, kinds=ROLLOUT_KINDS)

    api = alb_ready.api_client("admin")
    name = resource_name(settings)
    ingress = client.NetworkingV1Api(api).read_namespaced_ingress(name, NS)
    assert ingress.spec.ingress_class_name == "alb" and ingress.spec.rules[0].host == "models.example.com"
    assert ingress.metadata.annotations["alb.ingress.kubernetes.io/certificate-arn"] == CERT
    assert ingress.metadata.annotations["alb.ingress.kubernetes.io/auth-type"] == "cognito"
    assert client.PolicyV1Api(api).read_namespaced_pod_disruption_budget(name, NS).spec.max_unavailable == 1
    hpa = (
        DynamicClient(api)
        .resources.get(api_version="autoscaling/v2", kind="HorizontalPodAutoscaler")
        .get(name=name, namespace=NS)
    )
    assert (hpa.spec.minReplicas, hpa.spec.maxReplicas) == (2, 6)
    deployment = client.AppsV1Api(api).read_namespaced_deployment(name, NS)
    spread = {c.topology_key for c in deployment.spec.template.spec.topology_spread_constraints}
    assert spread == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    assert deployment.spec.template.spec.containers[0].termination_message_policy == "FallbackToLogsOnError"
