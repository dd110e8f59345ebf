"""The aws profile's inference objects: valid against the Kubernetes schemas, and safe."""

from __future__ import annotations

import json
import re

import kubernetes_validate
import pytest

from eksml.cluster.loadbalancer import ALB_CONTROLLER_VERSION
from eksml.serving.manifests import (
    MODEL_URI_ANNOTATION,
    VERSION_LABEL,
    label_value,
    render_inference_objects,
    serving_spec,
)
from eksml.settings import Settings, SettingsError

URI = "s3://bucket/models/fashion-mnist/20261129T000000-tensorflow-3f2a9c"
VERSION = "20261129T000000-tensorflow-3f2a9c"


@pytest.fixture
def settings() -> Settings:
    return Settings(
        profile="aws",
        store_uri="s3://bucket",
        inference_namespace="serving",
        inference_service_account="inference-sa",
        image_registry="123.dkr.ecr.us-west-2.amazonaws.com/eksml",
        image_tag="1.2.3",
    )


RESILIENCE = ["Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"]
CERT = "arn:aws:acm:us-west-2:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
POOL = "arn:aws:cognito-idp:us-west-2:123456789012:userpool/us-west-2_AbCdEf123"


@pytest.mark.parametrize("ingress", [False, True])
def test_objects_are_valid_kubernetes_in_strict_mode(settings, ingress):
    settings = settings.replace(ingress_tls=False)
    objects = render_inference_objects(settings, URI, VERSION, ingress=ingress)
    assert [o["kind"] for o in objects] == RESILIENCE + (["Ingress"] if ingress else [])
    for obj in objects:
        assert kubernetes_validate.validate(obj, settings.kubernetes_version, strict=True)
        assert obj["metadata"]["namespace"] == "serving"


def test_deployment_runs_the_version_on_inference_nodes_safely(settings):
    deployment = render_inference_objects(settings, URI, VERSION)[0]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    assert spec["revisionHistoryLimit"] >= 1  # a previous revision to roll back to
    # A replaced pod keeps serving until no Service path sends it new connections, then drains
    # within the grace period (zero failed requests during a rollout on a real node:
    # tests/k8s/test_node_pipeline.py).
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop >= 5 and pod["terminationGracePeriodSeconds"] >= pre_stop + 30
    assert pod["nodeSelector"] == {"role": "inference"}
    assert pod["serviceAccountName"] == "inference-sa"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["image"] == "123.dkr.ecr.us-west-2.amazonaws.com/eksml/inference:1.2.3"
    assert container["command"] == ["python", "/opt/eksml/serve.py"]
    args = container["args"]
    assert args[args.index("--model-uri") + 1] == URI and args[args.index("--host") + 1] == "0.0.0.0"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/models/fashion-mnist"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    # A new version changes the pod template (a new revision) but never the immutable selector.
    assert spec["template"]["metadata"]["labels"][VERSION_LABEL] == VERSION
    assert spec["template"]["metadata"]["annotations"][MODEL_URI_ANNOTATION] == URI
    assert VERSION_LABEL not in spec["selector"]["matchLabels"]
    assert set(spec["selector"]["matchLabels"].items()) <= set(spec["template"]["metadata"]["labels"].items())
    assert not [e for e in container["env"] if "SECRET" in e["name"] or "ACCESS_KEY" in e["name"]]


def test_the_scratch_volume_does_not_keep_a_serving_node_from_scaling_down(settings):
    """cluster-autoscaler skips nodes whose pods use local storage (``--skip-nodes-with-local-storage``
    defaults to true) unless the pod names those volumes safe to evict (cluster-autoscaler FAQ)."""
    from eksml.cluster.autoscaler import autoscaler_objects

    template = render_inference_objects(settings, URI, VERSION)[0]["spec"]["template"]
    local = {v["name"] for v in template["spec"]["volumes"] if "emptyDir" in v}
    annotation = template["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes"]
    assert local and set(annotation.split(",")) == local
    (deploy,) = [
        o
        for o in autoscaler_objects(
            cluster_name="c", region="us-west-2", kubernetes_version="1.35", role_arn="arn:aws:iam::1:role/x"
        )
        if o["kind"] == "Deployment"
    ]
    command = deploy["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--skip-nodes-with-local-storage=false" not in command  # the flag stays on for every other pod


def test_service_and_ingress_point_at_the_pods(settings):
    settings = settings.replace(ingress_tls=False)
    deployment, service, _pdb, _hpa, ingress = render_inference_objects(settings, URI, VERSION, ingress=True)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": service["metadata"]["name"], "port": {"number": service["spec"]["ports"][0]["port"]}}
    assert ingress["spec"]["ingressClassName"] == "alb"
    assert ingress["metadata"]["annotations"]["alb.ingress.kubernetes.io/target-type"] == "ip"
    assert ingress["metadata"]["annotations"]["alb.ingress.kubernetes.io/scheme"] == "internal"


def test_bad_input_fails_before_rendering(settings):
    with pytest.raises(ValueError, match="s3://"):
        render_inference_objects(settings, "file:///tmp/model", VERSION)
    with pytest.raises(ValueError, match="ingress_scheme"):
        render_inference_objects(settings.replace(ingress_scheme="public", ingress_tls=False), URI, VERSION)
    with pytest.raises(ValueError, match="version"):
        serving_spec(URI, "", "fashion-mnist")


def test_label_values_are_made_valid():
    assert label_value("v1/../x y") == "v1-..-x-y"
    assert len(label_value("a" * 100)) == 63
    assert label_value("---") == "unknown"


def _annotations(settings: Settings) -> dict[str, str]:
    return render_inference_objects(settings.replace(ingress=True), URI, VERSION)[-1]["metadata"]["annotations"]


def test_https_ingress_redirects_http_and_signs_in_through_cognito(settings):
    https = settings.replace(
        ingress_certificate_arn=CERT,
        ingress_host="models.example.com",
        ingress_scheme="internet-facing",
        ingress_auth="cognito",
        ingress_cognito_user_pool_arn=POOL,
        ingress_cognito_client_id="client123",
        ingress_cognito_domain="eksml-login",
    )
    ingress = render_inference_objects(https.replace(ingress=True), URI, VERSION)[-1]
    assert kubernetes_validate.validate(ingress, settings.kubernetes_version, strict=True)
    assert ingress["spec"]["rules"][0]["host"] == "models.example.com"
    a = ingress["metadata"]["annotations"]
    alb = "alb.ingress.kubernetes.io/"
    assert json.loads(a[alb + "listen-ports"]) == [{"HTTP": 80}, {"HTTPS": 443}]
    assert a[alb + "ssl-redirect"] == "443" and a[alb + "certificate-arn"] == CERT
    assert a[alb + "auth-type"] == "cognito" and a[alb + "auth-on-unauthenticated-request"] == "authenticate"
    assert json.loads(a[alb + "auth-idp-cognito"]) == {
        "userPoolARN": POOL,
        "userPoolClientID": "client123",
        "userPoolDomain": "eksml-login",
    }


def test_oidc_sign_in_names_the_users_secret(settings):
    oidc = settings.replace(
        ingress_certificate_arn=CERT,
        ingress_auth="oidc",
        ingress_oidc_issuer="https://id.example.com",
        ingress_oidc_authorization_endpoint="https://id.example.com/authorize",
        ingress_oidc_token_endpoint="https://id.example.com/token",
        ingress_oidc_user_info_endpoint="https://id.example.com/userinfo",
        ingress_oidc_secret_name="eksml-oidc",
    )
    idp = json.loads(_annotations(oidc)["alb.ingress.kubernetes.io/auth-idp-oidc"])
    assert idp["secretName"] == "eksml-oidc" and idp["issuer"] == "https://id.example.com"


def _documented_annotations() -> set[str]:
    """Annotation names of the pinned controller release's own reference (vendored with a SHA-256)."""
    from eksml.cluster.addons import ALB_CONTROLLER, pinned_file

    text = pinned_file(ALB_CONTROLLER, f"annotations-{ALB_CONTROLLER_VERSION}.md").read_text()
    return set(re.findall(r"^\| \[(alb\.ingress\.kubernetes\.io/[a-z0-9.-]+)\]", text, re.M))


def test_every_ingress_annotation_is_documented_by_the_pinned_controller(settings):
    documented = _documented_annotations()
    assert len(documented) > 40 and "alb.ingress.kubernetes.io/ssl-redirect" in documented
    https = settings.replace(ingress_certificate_arn=CERT, ingress_inbound_cidrs=("10.0.0.0/8",))
    for variant in (
        settings.replace(ingress_tls=False),
        https,
        https.replace(
            ingress_auth="cognito",
            ingress_cognito_user_pool_arn=POOL,
            ingress_cognito_client_id="c",
            ingress_cognito_domain="d",
        ),
        https.replace(
            ingress_auth="oidc",
            **{f"ingress_oidc_{n}": "https://x" for n in ("issuer", "authorization_endpoint", "token_endpoint")},
            ingress_oidc_user_info_endpoint="https://x",
            ingress_oidc_secret_name="s",
        ),
    ):
        used = set(_annotations(variant))
        assert used <= documented, used - documented
    assert "alb.ingress.kubernetes.io/made-up" not in documented  # the check can fail


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ingress": True}, "ingress_tls is on but ingress_certificate_arn is empty"),
        ({"ingress": True, "ingress_certificate_arn": "arn:aws:iam::1:cert"}, "not an ACM certificate ARN"),
        ({"ingress": True, "ingress_tls": False, "ingress_auth": "cognito"}, "authenticates on HTTPS only"),
        ({"ingress": True, "ingress_certificate_arn": CERT, "ingress_auth": "cognito"}, "user pool ARN"),
        ({"ingress": True, "ingress_certificate_arn": CERT, "ingress_auth": "oidc"}, "ingress_oidc_issuer"),
        (
            {"ingress": True, "ingress_certificate_arn": CERT, "ingress_scheme": "internet-facing"},
            "would serve everyone",
        ),
        ({"inference_min_replicas": 3, "inference_max_replicas": 2}, "inference_min_replicas"),
    ],
)
def test_unsafe_or_incomplete_ingress_settings_are_refused(settings, changes, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        settings.replace(**changes)


def test_ingress_from_the_operator_argument_is_checked_like_the_settings(settings):
    with pytest.raises(SettingsError, match="ingress_certificate_arn is empty"):
        render_inference_objects(settings, URI, VERSION, ingress=True)


def test_server_is_spread_guarded_and_autoscaled(settings):
    deployment, _service, pdb, hpa = render_inference_objects(settings.replace(inference_max_replicas=3), URI, VERSION)
    selector = deployment["spec"]["selector"]
    assert pdb["spec"]["selector"] == selector and pdb["spec"]["maxUnavailable"] == 1
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "fashion-mnist-inference",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 3)
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    keys = {c["topologyKey"]: c["whenUnsatisfiable"] for c in pod["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone": "ScheduleAnyway", "kubernetes.io/hostname": "DoNotSchedule"}
    assert all(c["labelSelector"] == selector for c in pod["topologySpreadConstraints"])
    assert pod["containers"][0]["terminationMessagePolicy"] == "FallbackToLogsOnError"
    # a replica count outside the autoscaler's bounds is brought within them
    assert render_inference_objects(settings, URI, VERSION, replicas=9)[0]["spec"]["replicas"] == 6
