"""The aws profile's training pod on a real node: the TensorFlow image trains on a slice of
Fashion-MNIST read from S3, checkpoints every epoch to S3 and exports there.

The pod is the one ``GpuTrainingPodOperator`` submits (run through its deferral and the
provider's ``KubernetesPodTrigger``, as the pipeline identity), with the GPU count 0 set in the
workload spec, the node labelled as the training node group, and the S3 store a moto server the
pod reaches on the node's address (``pod_store_endpoint_url``; keys from a Secret by ``envFrom``).
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import pytest
from conftest import NODE_BUCKET as BUCKET
from k8s_tasks import run_task, task_context

from eksml.kubernetes.operators import GpuTrainingPodOperator
from eksml.specs import training_spec

pytestmark = [pytest.mark.k8s, pytest.mark.node]

NS = "ml-training"
SLICE = {"limit_train": 2048, "limit_test": 512}


def _keys(s3: Any, prefix: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"][len(prefix) :] for o in listed.get("Contents", []))


def test_tf_training_pod_trains_from_s3_checkpoints_and_exports(
    training_cluster: dict[str, Any], s3_on_node: tuple[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    _endpoint, s3 = s3_on_node
    spec = training_spec(
        framework="tensorflow",
        data_uri=f"s3://{BUCKET}/store/data/slice",
        model_uri=f"s3://{BUCKET}/store/models/v1",
        checkpoint_uri=f"s3://{BUCKET}/store/checkpoints/v1",
        epochs=2,
        batch_size=64,
        learning_rate=0.001,
        gpus=0,
        **SLICE,
    )
    operator = GpuTrainingPodOperator(
        task_id="train_tensorflow",
        spec=spec.to_dict(),
        settings=training_cluster["settings"],
        on_finish_action="keep_pod",
        deferrable=True,
        poll_interval=1,
        startup_check_interval_seconds=1,
    )
    context = task_context("train_tensorflow")
    started = time.monotonic()
    run_task(operator, context, timeout=900)
    wall = time.monotonic() - started

    pod = training_cluster["core"].read_namespaced_pod(context["ti"].xcom["pod_name"], NS)
    assert pod.status.phase == "Succeeded"
    assert pod.spec.node_name == "eksml-node"
    assert "nvidia.com/gpu" not in (pod.spec.containers[0].resources.limits or {})
    assert {"metrics.json", "model.keras", "saved_model/saved_model.pb"} <= set(_keys(s3, "store/models/v1/"))
    assert _keys(s3, "store/checkpoints/v1/")  # one checkpoint per epoch
    out = capsys.readouterr()
    assert "epoch 2/2" in out.out + out.err  # the container's own log, through the API server
    print(f"[node] TensorFlow training pod (2 epochs, {SLICE}) finished in {wall:.1f} s")


def _operator(settings: Any, spec: Any, task_id: str) -> GpuTrainingPodOperator:
    return GpuTrainingPodOperator(
        task_id=task_id,
        spec=spec.to_dict(),
        settings=settings,
        on_finish_action="keep_pod",
        deferrable=True,
        poll_interval=1,
        startup_check_interval_seconds=1,
    )


def test_training_pod_deleted_mid_run_the_retry_resumes_from_the_s3_checkpoint(
    training_cluster: dict[str, Any], s3_on_node: tuple[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow.sdk.exceptions import AirflowException

    _endpoint, s3 = s3_on_node
    core = training_cluster["core"]
    epochs = 6
    spec = training_spec(
        framework="tensorflow",
        data_uri=f"s3://{BUCKET}/store/data/slice",
        model_uri=f"s3://{BUCKET}/store/models/v2",
        checkpoint_uri=f"s3://{BUCKET}/store/checkpoints/v2",
        epochs=epochs,
        batch_size=64,
        learning_rate=0.001,
        gpus=0,
        limit_train=8192,
        limit_test=512,
    )
    first = task_context("train_tensorflow", try_number=1)
    outcome: dict[str, BaseException | None] = {}

    def attempt() -> None:
        try:
            run_task(_operator(training_cluster["settings"], spec, "train_tensorflow"), first, timeout=900)
            outcome["error"] = None
        except BaseException as exc:  # what the try ends with is the test's subject
            outcome["error"] = exc

    thread = threading.Thread(target=attempt)
    thread.start()
    deadline = time.monotonic() + 600
    while not _keys(s3, "store/checkpoints/v2/epoch-0001/") and time.monotonic() < deadline:
        assert thread.is_alive(), f"the first try ended before its first checkpoint: {outcome}"
        time.sleep(0.5)
    assert _keys(s3, "store/checkpoints/v2/epoch-0001/"), "no checkpoint of epoch 1 within 600 s"
    core.delete_namespaced_pod(first["ti"].xcom["pod_name"], NS, grace_period_seconds=0)
    thread.join(600)
    assert not thread.is_alive()
    assert isinstance(outcome["error"], AirflowException), outcome
    assert not _keys(s3, "store/models/v2/")  # nothing exported by the interrupted try
    capsys.readouterr()

    second = task_context("train_tensorflow", try_number=2)
    run_task(_operator(training_cluster["settings"], spec, "train_tensorflow"), second, timeout=900)
    log = "".join(capsys.readouterr())
    resumed = re.search(r"resuming from the checkpoint of epoch (\d+) at \S+: training epoch (\d+) onwards", log)
    assert resumed, log[-3000:]
    done = int(resumed.group(1))
    assert 1 <= done < epochs and int(resumed.group(2)) == done + 1
    assert f"epoch {done + 1}/{epochs}" in log and f"epoch 1/{epochs}" not in log
    assert core.read_namespaced_pod(second["ti"].xcom["pod_name"], NS).status.phase == "Succeeded"
    assert "metrics.json" in _keys(s3, "store/models/v2/")
    print(f"[node] pod deleted after epoch >= 1; the retry resumed after epoch {done} of {epochs}")
