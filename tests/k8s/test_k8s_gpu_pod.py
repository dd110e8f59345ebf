"""The training pod through GpuTrainingPodOperator (a KubernetesPodOperator) on a real control plane.

The pod is admitted by the real API server (RBAC for the pipeline identity, the
ServiceAccount and PodSecurity ``restricted`` admission of the project's namespace), placed by
the real kube-scheduler among simulated nodes shaped like the project's node groups, run by
kwok (which plays the kubelet: no container runs, the outcome follows the image tag), and
followed by the provider's own KubernetesPodTrigger.
"""

from __future__ import annotations

import json
import time

import pytest
from conftest import PIPELINE, aws_settings
from k8s_tasks import run_task, task_context
from kubernetes import client

from eksml.kubernetes.operators import GpuTrainingPodOperator, render_training_pod
from eksml.specs import training_spec

pytestmark = pytest.mark.k8s

NS = "ml-training"
SPEC = training_spec(
    framework="tensorflow",
    data_uri="s3://eksml-bucket/store/data/x",
    model_uri="s3://eksml-bucket/store/models/v1",
    checkpoint_uri="s3://eksml-bucket/store/ckpt/v1",
    epochs=1,
    batch_size=32,
    learning_rate=0.01,
    gpus=1,
)


def _operator(settings, task_id: str = "train_tensorflow") -> GpuTrainingPodOperator:
    # logging_interval: the provider then reads the finished pod's log without ``follow``. kwok
    # serves a followed log until the client hangs up (a kubelet ends it when the container
    # exits), which would only make the read time out here.
    return GpuTrainingPodOperator(
        task_id=task_id,
        spec=SPEC.to_dict(),
        settings=settings,
        on_finish_action="keep_pod",
        deferrable=True,  # as the training DAG sets it: the watch runs in the trigger
        poll_interval=0.5,
        startup_check_interval_seconds=1,
        logging_interval=60,
    )


def _wait_for(read, done, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = read()
        if done(value):
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: last {value!r}")


def test_training_pod_runs_on_a_gpu_node_and_the_task_succeeds(prepared_cluster, pipeline_conn, capsys):
    core = client.CoreV1Api(prepared_cluster.api_client("admin"))
    context = task_context("train_tensorflow")
    run_task(_operator(aws_settings(pipeline_conn)), context)

    pod = core.read_namespaced_pod(context["ti"].xcom["pod_name"], NS)
    assert pod.status.phase == "Succeeded"
    node = core.read_node(pod.spec.node_name)
    assert node.metadata.labels["role"] == "train"
    assert int(node.status.allocatable["nvidia.com/gpu"]) >= SPEC.resources.gpus >= 1
    assert [t.key for t in node.spec.taints] == ["nvidia.com/gpu"]  # tolerated by the pod, not by others
    out = capsys.readouterr()
    assert "simulated training container: epoch 1/1" in out.out + out.err  # the container log, via the API server


def test_gpu_pod_never_lands_on_an_inference_node(prepared_cluster):
    """With every GPU node cordoned the scheduler leaves the pod Pending although inference nodes
    have room; uncordoned, it is placed on a train node."""
    admin = client.CoreV1Api(prepared_cluster.api_client("admin"))
    pipeline = client.CoreV1Api(prepared_cluster.api_client(PIPELINE))
    train_nodes = [n.metadata.name for n in admin.list_node(label_selector="role=train").items]
    assert train_nodes and admin.list_node(label_selector="role=inference").items
    pod = render_training_pod(SPEC, aws_settings("unused"), name="placement-probe")
    try:
        for name in train_nodes:
            admin.patch_node(name, {"spec": {"unschedulable": True}})
        pipeline.create_namespaced_pod(NS, pod)
        events = _wait_for(
            lambda: admin.list_namespaced_event(NS, field_selector="involvedObject.name=placement-probe").items,
            lambda items: any(e.reason == "FailedScheduling" for e in items),
            what="FailedScheduling",
        )
        message = next(e.message for e in events if e.reason == "FailedScheduling")
        assert "didn't match Pod's node affinity/selector" in message and "unschedulable" in message
        assert admin.read_namespaced_pod("placement-probe", NS).spec.node_name is None
    finally:
        for name in train_nodes:
            admin.patch_node(name, {"spec": {"unschedulable": False}})
    placed = _wait_for(
        lambda: admin.read_namespaced_pod("placement-probe", NS),
        lambda p: p.spec.node_name is not None,
        what="placement",
    )
    assert placed.spec.node_name in train_nodes
    admin.delete_namespaced_pod("placement-probe", NS)


def test_failing_pod_fails_the_task_with_its_reason(prepared_cluster, pipeline_conn):
    from airflow.sdk.exceptions import AirflowException

    core = client.CoreV1Api(prepared_cluster.api_client("admin"))
    context = task_context("train_tensorflow_fails")
    operator = _operator(aws_settings(pipeline_conn, image_tag="1.0.0-exit1"), task_id="train_tensorflow_fails")
    with pytest.raises(AirflowException) as failure:
        run_task(operator, context)
    pod = core.read_namespaced_pod(context["ti"].xcom["pod_name"], NS)  # a failed pod is kept for inspection
    assert pod.status.phase == "Failed"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (1, "Error")
    # The provider names the pod; the container's own last words reach the message only through
    # its termination message (kwok writes none), so the reason is read from the pod itself.
    assert f"Pod {pod.metadata.name} returned a failure" in str(failure.value)


def test_restricted_pod_security_refuses_a_privileged_pod(prepared_cluster):
    """The namespace the training pods were admitted to really enforces ``restricted``."""
    admin = client.CoreV1Api(prepared_cluster.api_client("admin"))
    pod = render_training_pod(SPEC, aws_settings("unused"), name="privileged-probe")
    pod["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    with pytest.raises(client.ApiException) as refused:
        admin.create_namespaced_pod(NS, pod)
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert 'violates PodSecurity "restricted:latest"' in message and "privileged" in message
