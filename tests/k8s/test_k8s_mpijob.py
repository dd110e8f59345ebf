"""The MPIJob through MPIJobOperator and MPIJobTrigger, with the real Kubeflow MPI operator.

The operator (v0.8.2's controller, built from source) turns our MPIJob into its ssh Secret,
hostfile ConfigMap, headless Service, worker pods and a launcher Job; the real job and
garbage-collector controllers and kube-scheduler do their part; kwok plays the kubelets (workers
run and become Ready, the launcher exits 0, or 1 for an ``-exit1`` image tag). The conditions
our trigger reads are the ones the MPI operator writes.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import aws_settings
from k8s_tasks import run_task, task_context
from kubernetes import client

from eksml.cluster.node_contract import CPU_ROLES
from eksml.kubernetes.manifests import GROUP, JOB_NAME_LABEL, PLURAL, VERSION, RunPolicy
from eksml.kubernetes.operators import MPIJobOperator
from eksml.specs import training_spec

pytestmark = pytest.mark.k8s

NS = "ml-training"
SPEC = training_spec(
    framework="mxnet",
    data_uri="s3://eksml-bucket/store/data/x",
    model_uri="s3://eksml-bucket/store/models/v2",
    checkpoint_uri="s3://eksml-bucket/store/ckpt/v2",
    epochs=1,
    batch_size=64,
    learning_rate=0.05,
    gpus=1,
    workers=2,
)


def _operator(settings, task_id: str, **kwargs) -> MPIJobOperator:
    kwargs.setdefault("deferrable", True)
    return MPIJobOperator(
        task_id=task_id, spec=SPEC.to_dict(), settings=settings, poll_interval=0.5, startup_timeout=120, **kwargs
    )


def _job(api, name: str) -> dict:
    return client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)


def _conditions(job: dict) -> dict[str, str]:
    return {c["type"]: c["status"] for c in job.get("status", {}).get("conditions", [])}


def _pods(core, name: str) -> list:
    return core.list_namespaced_pod(NS, label_selector=f"{JOB_NAME_LABEL}={name}").items


def _wait_for(read, done, timeout: float = 90.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = read()
        if done(value):
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}: last {value!r}")


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferred", "in-worker"])
def test_mpijob_runs_through_the_real_operator_and_succeeds(prepared_cluster, pipeline_conn, capsys, deferrable):
    admin = prepared_cluster.api_client("admin")
    task_id = "train_mxnet" if deferrable else "train_mxnet_in_worker"
    result = run_task(_operator(aws_settings(pipeline_conn), task_id, deferrable=deferrable), task_context(task_id))

    assert result["phase"] == "Succeeded"
    job = _job(admin, result["name"])
    conditions = _conditions(job)
    assert conditions["Created"] == "True" and conditions["Succeeded"] == "True"
    assert conditions["Running"] == "False"  # the operator flips Running off when the launcher ends
    reasons = {c["type"]: c["reason"] for c in job["status"]["conditions"]}
    assert reasons["Succeeded"] == "MPIJobSucceeded"

    core = client.CoreV1Api(admin)
    pods = _pods(core, result["name"])
    roles = sorted(p.metadata.labels["training.kubeflow.org/job-role"] for p in pods)
    assert roles.count("launcher") == 1
    launcher = next(p for p in pods if p.metadata.labels["training.kubeflow.org/job-role"] == "launcher")
    assert launcher.status.phase == "Succeeded"
    assert launcher.metadata.owner_references[0].kind == "Job"  # the real operator's v2 launcher
    for pod in pods:  # placed by the real scheduler: workers on GPU nodes, the CPU-only launcher off them
        node = core.read_node(pod.spec.node_name)
        if pod.metadata.labels["training.kubeflow.org/job-role"] == "worker":
            assert node.metadata.labels["role"] == "train" and "nvidia.com/gpu" in node.status.allocatable
        else:
            assert node.metadata.labels["role"] in CPU_ROLES and "nvidia.com/gpu" not in node.status.allocatable
    out = capsys.readouterr().out
    assert "simulated launcher: rank 0 of 2 up" in out  # the launcher's log reached the task log


def test_failed_launcher_fails_the_task_with_the_operators_reason(prepared_cluster, pipeline_conn):
    from airflow.sdk.exceptions import AirflowException

    operator = _operator(
        aws_settings(pipeline_conn, image_tag="1.0.0-exit1"), "train_mxnet_fails", run_policy=RunPolicy(backoff_limit=0)
    )
    with pytest.raises(AirflowException) as failure:
        run_task(operator, task_context("train_mxnet_fails"))
    message = str(failure.value)
    (name,) = [
        j["metadata"]["name"]
        for j in client.CustomObjectsApi(prepared_cluster.api_client("admin")).list_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL
        )["items"]
        if j["metadata"]["labels"].get("eksml/task-id") == "train_mxnet_fails"
    ]
    job = _job(prepared_cluster.api_client("admin"), name)
    assert _conditions(job)["Failed"] == "True"
    (failed,) = [c for c in job["status"]["conditions"] if c["type"] == "Failed"]
    assert failed["reason"] in message  # the reason the MPI operator wrote, e.g. BackoffLimitExceeded
    assert "simulated launcher" in message  # with the launcher's last lines


def test_killing_the_task_deletes_the_job_and_its_pods_are_collected(prepared_cluster, pipeline_conn):
    from airflow.sdk.exceptions import TaskDeferred

    admin = prepared_cluster.api_client("admin")
    core = client.CoreV1Api(admin)
    operator = _operator(aws_settings(pipeline_conn, image_tag="1.0.0-never-ready"), "train_mxnet_killed")
    context = task_context("train_mxnet_killed")
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    name = deferred.value.trigger.name
    # Workers that never become Ready keep the job waiting for its launcher: the job is live.
    _wait_for(lambda: _pods(core, name), lambda pods: len(pods) == 2, what="two worker pods")
    asyncio.run(deferred.value.trigger.on_kill())  # what the triggerer runs when the deferred task is killed

    with pytest.raises(client.ApiException) as gone:
        _job(admin, name)
    assert gone.value.status == 404
    _wait_for(lambda: _pods(core, name), lambda pods: pods == [], what="garbage collection of the job's pods")
