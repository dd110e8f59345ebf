"""The inference Deployment rolled out by the real deployment and replicaset controllers.

``maxUnavailable: 0`` is the controllers' to honour, not ours: while a new revision whose pods
never become Ready is stuck, the old ReplicaSet's pods keep serving, and our rollback returns
the Deployment to them. kwok marks pods Ready (or, for an image tag ending in
``-never-ready``, never). Not covered here: the smoke test through the Service proxy, which
needs a real server behind a pod IP (tested against the real model server in
tests/integration); under kwok nothing listens on pod IPs.
"""

from __future__ import annotations

import time

import pytest
from conftest import PIPELINE, aws_settings
from kubernetes import client

from eksml.kubernetes.hooks import REVISION_ANNOTATION, ROLLOUT_KINDS, DeploymentHook
from eksml.serving.manifests import render_inference_objects, resource_name
from eksml.serving.operators import RolloutError, roll_out

pytestmark = pytest.mark.k8s

NS = "ml-serving"


class _Rollout:
    """The deployment step through a DeploymentHook with the pipeline identity's kubeconfig."""

    def __init__(self, plane, settings, sleep, timeout: float) -> None:
        self.hook = DeploymentHook(conn_id=None, kubernetes_conn_id=None, config_file=str(plane.kubeconfig(PIPELINE)))
        self.name, self.timeout, self.sleep = resource_name(settings), timeout, sleep

    def apply(self, objects):
        self.hook.apply_objects(objects, namespace=NS, kinds=ROLLOUT_KINDS)

    def wait(self):
        return self.hook.wait_for_rollout(self.name, NS, timeout=self.timeout, poll_interval=0.5, sleep=self.sleep)

    def deploy(self, objects, check):
        kwargs = {"name": self.name, "namespace": NS, "timeout": self.timeout, "poll_interval": 0.5}
        return roll_out(self.hook, objects, check, sleep=self.sleep, **kwargs)


def _rollout(plane, settings, samples: list | None = None, timeout: float = 60.0) -> _Rollout:
    def sleep(seconds: float) -> None:
        if samples is not None:
            samples.append(
                client.AppsV1Api(plane.api_client("admin"))
                .read_namespaced_deployment_status(resource_name(settings), NS)
                .status
            )
        time.sleep(seconds)

    return _Rollout(plane, settings, sleep, timeout)


def _serving_pods(core, settings) -> dict[str, str]:
    pods = core.list_namespaced_pod(NS, label_selector=f"app.kubernetes.io/instance={resource_name(settings)}").items
    return {
        p.metadata.uid: p.spec.containers[0].image
        for p in pods
        if p.status.phase == "Running" and p.metadata.deletion_timestamp is None
    }


def test_rollout_and_rollback_of_a_never_ready_revision(prepared_cluster, pipeline_conn):
    core = client.CoreV1Api(prepared_cluster.api_client("admin"))
    good = aws_settings(pipeline_conn)
    v1 = render_inference_objects(good, "s3://eksml-bucket/store/models/fashion-mnist/v1", "v1", replicas=2)
    first = _rollout(prepared_cluster, good)
    first.apply(v1)
    status = first.wait()
    assert status.done, status.message
    serving = _serving_pods(core, good)
    assert len(serving) == 2 and set(serving.values()) == {v1[0]["spec"]["template"]["spec"]["containers"][0]["image"]}
    for pod in core.list_namespaced_pod(NS, label_selector=f"app.kubernetes.io/instance={resource_name(good)}").items:
        assert core.read_node(pod.spec.node_name).metadata.labels["role"] == "inference"

    broken = good.replace(image_tag="1.0.1-never-ready")
    v2 = render_inference_objects(broken, "s3://eksml-bucket/store/models/fashion-mnist/v2", "v2", replicas=2)
    samples: list = []
    second = _rollout(prepared_cluster, broken, samples, timeout=20.0)
    with pytest.raises(RolloutError) as failed:
        second.deploy(v2, check=lambda _transport: pytest.fail("a rollout that never finished was smoke-tested"))
    assert "rollout failed" in str(failed.value) and "rolled back to revision 1" in str(failed.value)

    stuck = [
        s for s in samples if (s.updated_replicas or 0) >= 1 and s.observed_generation and s.observed_generation >= 2
    ]
    assert stuck, "the new revision never got a pod"
    assert all((s.available_replicas or 0) >= 2 for s in samples)  # maxUnavailable 0: never below 2 serving
    assert _serving_pods(core, good) == serving  # the very same v1 pods kept serving throughout
    deployment = client.AppsV1Api(prepared_cluster.api_client("admin")).read_namespaced_deployment(
        resource_name(good), NS
    )
    assert (
        deployment.spec.template.spec.containers[0].image == v1[0]["spec"]["template"]["spec"]["containers"][0]["image"]
    )
    assert int(deployment.metadata.annotations[REVISION_ANNOTATION]) == 3  # rollback = the old template as revision 3
