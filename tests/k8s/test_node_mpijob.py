"""The aws profile's MPIJob on a real node: the real MPI operator (v0.8.2, built from source)
starts a launcher and 2 workers from the MXNet image; the launcher's ``horovodrun`` reaches the
workers' sshd over SSH by the names the operator writes in its hostfile
(``<job>-worker-N.<job>.<ns>.svc``, resolved by the node's cluster DNS, CoreDNS) and trains
MXNet with Horovod over Gloo on a slice of Fashion-MNIST read from S3 (a moto server on the
node's address). ``MPIJobOperator`` submits it as the pipeline identity, waits through its
trigger, copies the launcher's log into the task log and, the job done, the operator's
``cleanPodPolicy`` removes the workers.

Configuration only, as a user of such a cluster sets it: GPU count 0 in the workload, the
workers' CPU request (``mpi_worker_cpu``: 2 workers and the 1-CPU launcher on one 2-CPU node),
no node-group placement (``node_roles``: one node carries no ``role`` labels).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from datetime import datetime
from typing import Any

import pytest
from conftest import NODE_BUCKET as BUCKET
from k8s_tasks import run_task, task_context
from kubernetes import client
from test_node_training import NS

from eksml.kubernetes.manifests import GROUP, JOB_NAME_LABEL, JOB_ROLE_LABEL, PLURAL, VERSION, RunPolicy, job_name
from eksml.kubernetes.operators import MPIJobOperator
from eksml.specs import training_spec

pytestmark = [pytest.mark.k8s, pytest.mark.node]


@pytest.fixture(scope="module")
def mpi_cluster(training_cluster: dict[str, Any]) -> dict[str, Any]:
    """The session's prepared cluster (the project's objects, the store's Secret, S3 on the
    node's address) with the settings a user of a one-node cluster adds."""
    settings = dataclasses.replace(training_cluster["settings"], mpi_worker_cpu="250m", node_roles=False)
    return {**training_cluster, "settings": settings}


def _spec(version: str, epochs: int, limit_train: int) -> Any:
    return training_spec(
        framework="mxnet",
        data_uri=f"s3://{BUCKET}/store/data/slice",
        model_uri=f"s3://{BUCKET}/store/models/{version}",
        checkpoint_uri=f"s3://{BUCKET}/store/checkpoints/{version}",
        epochs=epochs,
        batch_size=64,
        learning_rate=0.001,
        gpus=0,
        workers=2,
        limit_train=limit_train,
        limit_test=512,
    )


def _operator(settings: Any, spec: Any, task_id: str, **kwargs: Any) -> MPIJobOperator:
    return MPIJobOperator(
        task_id=task_id,
        spec=spec.to_dict(),
        settings=settings,
        poll_interval=1,
        startup_timeout=600,
        deferrable=True,
        **kwargs,
    )


def _pods(core: Any, job: str) -> list[Any]:
    return core.list_namespaced_pod(NS, label_selector=f"{JOB_NAME_LABEL}={job}").items


def _role(pod: Any) -> str:
    return pod.metadata.labels[JOB_ROLE_LABEL]


def _wait_for(read: Any, done: Any, what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(1)
        value = read()
    assert done(value), f"timed out waiting for {what}: last {value!r}"
    return value


def _json(s3: Any, key: str) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def _has(s3: Any, key: str) -> bool:
    return s3.list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount", 0) > 0


def test_mpijob_trains_mxnet_with_horovodrun_over_ssh(
    mpi_cluster: dict[str, Any],
    s3_on_node: tuple[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _endpoint, s3 = s3_on_node
    core = mpi_cluster["core"]
    spec = _spec("mx1", epochs=1, limit_train=2048)
    started = time.monotonic()
    result = run_task(_operator(mpi_cluster["settings"], spec, "train_mxnet"), task_context("train_mxnet"), 900)
    wall = time.monotonic() - started

    assert result["phase"] == "Succeeded"
    metrics = _json(s3, "store/models/mx1/metrics.json")
    assert metrics["framework"] == "mxnet" and metrics["workers"] == 2 and metrics["epochs"] == 1
    assert metrics["horovod"]["controller"] == "gloo" and metrics["train_images"] == 2048
    assert metrics["test_accuracy"] > 0.2  # ten classes: chance is 0.1 (one epoch of 32 steps)
    log = "".join(capsys.readouterr())
    # The launcher's own output, copied into the task log: both ranks, one per worker pod.
    assert "rank 1/2: done; rank 0 exports the model" in log and "rank 0/2: test accuracy" in log

    pods = _pods(core, result["name"])
    (launcher,) = [p for p in pods if _role(p) == "launcher"]
    assert launcher.status.phase == "Succeeded" and launcher.spec.node_name == "eksml-node"
    for pod in pods:
        assert "nvidia.com/gpu" not in (pod.spec.containers[0].resources.limits or {})
    # cleanPodPolicy Running: the MPI operator deletes the workers once the launcher is done.
    _wait_for(
        lambda: [p.metadata.name for p in _pods(core, result["name"]) if _role(p) == "worker"],
        lambda names: not names,
        "the workers' clean-up",
    )
    job = client.CustomObjectsApi(core.api_client).get_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, result["name"]
    )
    created = datetime.fromisoformat(job["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    print(
        f"[node] MPIJob (2 workers, 1 epoch of 2,048 images): {wall:.1f} s from task start to success; "
        f"launcher started {(launcher.status.start_time - created).total_seconds():.0f} s after the job "
        "was created (workers scheduled, started and Ready first)"
    )


def test_a_worker_killed_mid_run_fails_the_job_clearly_and_the_retry_resumes(
    mpi_cluster: dict[str, Any],
    s3_on_node: tuple[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Worker 1's pod is deleted (grace 0) once epoch 1 is checkpointed: its sshd and rank die,
    ``horovodrun`` in the launcher fails, the job (no launcher retries) is Failed and the task
    fails saying so, with the launcher's last lines; the task's retry, a new job, resumes from
    the checkpoint in S3 and succeeds."""
    from airflow.sdk.exceptions import AirflowException

    _endpoint, s3 = s3_on_node
    core = mpi_cluster["core"]
    epochs = 3
    spec = _spec("mx2", epochs=epochs, limit_train=2048)
    policy = RunPolicy(backoff_limit=0)
    task_id = "train_mxnet_worker_killed"
    first = task_context(task_id, try_number=1)
    outcome: dict[str, BaseException | None] = {}
    operator = _operator(mpi_cluster["settings"], spec, task_id, run_policy=policy)

    def attempt() -> None:
        try:
            run_task(operator, first, timeout=900)
            outcome["error"] = None
        except BaseException as exc:  # what the try ends with is the test's subject
            outcome["error"] = exc

    started = time.monotonic()
    thread = threading.Thread(target=attempt)
    thread.start()
    deadline = time.monotonic() + 600
    while not _has(s3, "store/checkpoints/mx2/latest.json") and time.monotonic() < deadline:
        assert thread.is_alive(), f"the first try ended before its first checkpoint: {outcome}"
        time.sleep(0.5)
    assert _has(s3, "store/checkpoints/mx2/latest.json"), "no checkpoint of epoch 1 within 600 s"
    job = job_name(spec.name, MPIJobOperator.try_key(first))  # the name the operator gives this try's job
    victim = f"{job}-worker-1"
    core.delete_namespaced_pod(victim, NS, grace_period_seconds=0)
    thread.join(600)
    assert not thread.is_alive()
    error = outcome["error"]
    assert isinstance(error, AirflowException), outcome
    message = str(error)
    # What the MPI operator wrote (the launcher Job's reason), then the launcher's last lines:
    # Horovod's own account of the rank whose worker went away.
    assert f"MPIJob {NS}/{job} Failed" in message and "BackoffLimitExceeded" in message
    assert "Horovod detected that one or more processes exited with non-zero status" in message
    assert not _has(s3, "store/models/mx2/")  # nothing exported by the interrupted try
    capsys.readouterr()

    second = task_context(task_id, try_number=2)
    result = run_task(_operator(mpi_cluster["settings"], spec, task_id, run_policy=policy), second, 900)
    wall = time.monotonic() - started
    assert result["phase"] == "Succeeded" and result["name"] != job  # a new job for the new try
    log = "".join(capsys.readouterr())
    done = _json(s3, "store/models/mx2/metrics.json")["resumed_from_epoch"]
    assert 1 <= done < epochs
    assert f"rank 0/2: resuming at epoch {done + 1} from checkpoint epoch {done}" in log
    print(f"[node] the first try failed with:\n{message}")
    print(f"[node] worker killed after epoch >= 1; the retry resumed after epoch {done} of {epochs}; {wall:.1f} s")
