"""The aws profile's inference objects: valid against the Kubernetes schemas, and safe."""

from __future__ import annotations

import kubernetes_validate
import pytest

from eksml.serving.manifests import (
    MODEL_URI_ANNOTATION,
    VERSION_LABEL,
    label_value,
    render_inference_objects,
    serving_spec,
)
from eksml.settings import Settings

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


@pytest.mark.parametrize("ingress", [False, True])
def test_objects_are_valid_kubernetes_in_strict_mode(settings, ingress):
    objects = render_inference_objects(settings, URI, VERSION, ingress=ingress)
    assert [o["kind"] for o in objects] == ["Deployment", "Service"] + (["Ingress"] if ingress else [])
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
    deployment, service, ingress = render_inference_objects(settings, URI, VERSION, ingress=True)
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
    with pytest.raises(ValueError, match="scheme"):
        render_inference_objects(settings, URI, VERSION, ingress=True, ingress_scheme="public")
    with pytest.raises(ValueError, match="version"):
        serving_spec(URI, "", "fashion-mnist")


def test_label_values_are_made_valid():
    assert label_value("v1/../x y") == "v1-..-x-y"
    assert len(label_value("a" * 100)) == 63
    assert label_value("---") == "unknown"
