"""Faults of a training pod on a real node, and what the task's error says about them.

An image the node cannot pull (the settings name a tag nobody built; the node imports images
and pulls from no registry) fails the task at the kubelet's pull error, before the start-up
timeout, naming the image; the pod, which would hold its requests, is deleted. A pod over its
memory limit (the workload spec asks for a limit far below what TensorFlow needs) is
OOM-killed by the kernel through its cgroup, and the task's error says so and names the limit.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
from conftest import NODE_BUCKET
from k8s_tasks import run_task, task_context
from kubernetes.client.exceptions import ApiException

from eksml.kubernetes.operators import GpuTrainingPodOperator
from eksml.specs import Resources, WorkloadSpec, training_spec

pytestmark = [pytest.mark.k8s, pytest.mark.node]

#: The start-up timeout the faulty pods run with (the operator's default is for GPU nodes that
#: may be scaled up from zero; here the node is there).
STARTUP_TIMEOUT_S = 180


def _spec(version: str) -> WorkloadSpec:
    return training_spec(
        framework="tensorflow",
        data_uri=f"s3://{NODE_BUCKET}/store/data/slice",
        model_uri=f"s3://{NODE_BUCKET}/store/models/{version}",
        checkpoint_uri=f"s3://{NODE_BUCKET}/store/checkpoints/{version}",
        epochs=1,
        batch_size=64,
        learning_rate=0.001,
        gpus=0,
        limit_train=1024,
        limit_test=256,
    )


def _fail(settings: Any, spec: WorkloadSpec, task_id: str) -> tuple[BaseException, float, str]:
    """The task's error, how long it took to fail, and its pod's name."""
    operator = GpuTrainingPodOperator(
        task_id=task_id,
        spec=spec.to_dict(),
        settings=settings,
        deferrable=True,
        poll_interval=1,
        startup_check_interval_seconds=1,
        startup_timeout_seconds=STARTUP_TIMEOUT_S,
    )
    context = task_context(task_id)
    started = time.monotonic()
    with pytest.raises(Exception) as failed:
        run_task(operator, context, timeout=STARTUP_TIMEOUT_S + 300)
    return failed.value, time.monotonic() - started, context["ti"].xcom["pod_name"]


def _deleted(core: Any, pod: str, namespace: str, timeout: float = 60.0) -> bool:
    """Whether the pod is gone, or on its way (marked for deletion), within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if core.read_namespaced_pod(pod, namespace).metadata.deletion_timestamp is not None:
                return True
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        time.sleep(0.5)
    return False


def test_an_image_that_does_not_exist_fails_the_task_naming_the_image(training_cluster: dict[str, Any]) -> None:
    settings = training_cluster["settings"].replace(image_tag="no-such-tag")
    spec = _spec("missing-image")
    error, wall, pod = _fail(settings, spec, "train_missing_image")
    image = settings.image(spec.image)
    assert image in str(error), error
    # The pull error ended it, not the start-up timeout running out.
    assert "took too long" not in str(error), error
    # Not kept like a failed pod: a pod that never started would hold its requests (the node's CPUs).
    assert _deleted(training_cluster["core"], pod, training_cluster["settings"].namespace)
    print(f"[node] missing image {image}: the task failed in {wall:.1f} s (start-up timeout {STARTUP_TIMEOUT_S} s)")


def test_a_pod_over_its_memory_limit_fails_the_task_saying_oomkilled(training_cluster: dict[str, Any]) -> None:
    spec = _spec("oom")
    tiny = dataclasses.replace(spec, resources=Resources(cpu="1", memory="48Mi", gpus=0))
    error, wall, _pod = _fail(training_cluster["settings"], tiny, "train_oom")
    assert "OOMKilled" in str(error), error
    assert "48Mi" in str(error), error
    print(f"[node] training pod with a 48Mi memory limit: OOMKilled, the task failed in {wall:.1f} s")
