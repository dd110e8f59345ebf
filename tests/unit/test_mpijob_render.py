"""The MPIJob the operator would create, rendered without a cluster: valid against the MPI
operator's published CRD schema, pod templates valid as Kubernetes Pods, and the launcher
and workers wired the way the MPI operator v2 and horovodrun expect."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
from fixtures.published_schemas import mpijob_schema

from eksml.kubernetes.manifests import (
    RunPolicy,
    check_job_name,
    job_name,
    launcher_command,
    render_mpijob,
)
from eksml.settings import Settings
from eksml.specs import WorkloadSpecError, training_spec

REPO = Path(__file__).resolve().parents[2]
AWS = Settings(
    profile="aws",
    store_uri="s3://eksml-bucket/store",
    namespace="ml-training",
    training_service_account="training",
    image_registry="public.ecr.aws/eksml",
    image_tag="0.3.0",
)
NAME = "train-mxnet-0a1b2c3d"


def _spec(workers=2, gpus=4):
    return training_spec(
        framework="mxnet",
        data_uri="s3://eksml-bucket/store/data/fm/2026-01",
        model_uri="s3://eksml-bucket/store/models/fm/v8",
        checkpoint_uri="s3://eksml-bucket/store/ckpt/v8",
        epochs=10,
        batch_size=128,
        learning_rate=0.05,
        gpus=gpus,
        workers=workers,
    )


@pytest.fixture(scope="module")
def spec():
    return _spec()


@pytest.fixture(scope="module")
def job(spec):
    return render_mpijob(spec, AWS, NAME, labels={"eksml/try-number": "1"})


def _strict(schema: dict) -> dict:
    """The CRD schema as the API server applies it with strict field validation (kubectl's
    default): unknown fields are errors. Structural CRD schemas leave additionalProperties
    unset, so plain JSON-schema validation would accept any misspelt field."""
    schema = copy.deepcopy(schema)

    def close(node):
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return schema


@pytest.fixture(scope="module")
def crd_validator():
    schema = _strict(mpijob_schema())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_valid_against_the_published_crd_schema(job, crd_validator):
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in crd_validator.iter_errors(job)]
    assert errors == []


def test_strict_schema_catches_a_misspelt_field(job, crd_validator):
    broken = copy.deepcopy(job)
    broken["spec"]["slotsPerWorkers"] = broken["spec"].pop("slotsPerWorker")
    assert any("slotsPerWorkers" in e.message for e in crd_validator.iter_errors(broken))


@pytest.mark.parametrize("role", ["Launcher", "Worker"])
def test_pod_templates_are_valid_pods(job, role):
    template = job["spec"]["mpiReplicaSpecs"][role]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**template["metadata"], "name": f"{NAME}-{role.lower()}-0", "namespace": "ml-training"},
        "spec": {**template["spec"], "restartPolicy": job["spec"]["mpiReplicaSpecs"][role]["restartPolicy"]},
    }
    assert kubernetes_validate.validate(pod, "1.33", strict=True) == "1.33"


def test_job_shape(job):
    assert job["apiVersion"] == "kubeflow.org/v2beta1" and job["kind"] == "MPIJob"
    assert job["metadata"] == {
        "name": NAME,
        "namespace": "ml-training",
        "labels": {"app.kubernetes.io/part-of": "eksml", "eksml/framework": "mxnet", "eksml/try-number": "1"},
    }
    spec = job["spec"]
    assert spec["slotsPerWorker"] == 4
    assert spec["launcherCreationPolicy"] == "WaitForWorkersReady"
    assert spec["sshAuthMountPath"] == "/home/mpiuser/.ssh"
    assert spec["runPolicy"] == {
        "cleanPodPolicy": "Running",
        "backoffLimit": 2,
        "ttlSecondsAfterFinished": 3600,
        "activeDeadlineSeconds": 43200,
    }
    assert spec["mpiReplicaSpecs"]["Launcher"]["replicas"] == 1
    assert spec["mpiReplicaSpecs"]["Worker"]["replicas"] == 2


def _only_container(job, role):
    (container,) = job["spec"]["mpiReplicaSpecs"][role]["template"]["spec"]["containers"]
    return container


def test_launcher_runs_horovodrun_over_the_operators_hostfile(job, spec):
    launcher = _only_container(job, "Launcher")
    assert launcher["command"] == [
        "horovodrun",
        "-np",
        "8",
        "--hostfile",
        "/etc/mpi/hostfile",
        "python",
        "/opt/eksml/train.py",
        *spec.argv(),
    ]
    assert launcher["name"] == "mpi-launcher"
    assert launcher["image"] == "public.ecr.aws/eksml/mxnet-horovod:0.3.0"
    assert "nvidia.com/gpu" not in launcher["resources"]["limits"]
    assert launcher["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}


def test_workers_hold_one_gpu_per_slot_on_train_nodes(job):
    worker = _only_container(job, "Worker")
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert worker["command"] == ["/usr/sbin/sshd", "-De", "-f", "/home/mpiuser/.sshd_config"]
    assert worker["readinessProbe"]["tcpSocket"] == {"port": 22}
    pod = job["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]
    assert pod["nodeSelector"] == {"role": "train"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["securityContext"]["sysctls"] == [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "22"}]


@pytest.mark.parametrize("role", ["Launcher", "Worker"])
def test_both_roles_non_root_with_the_service_account(job, role):
    pod = job["spec"]["mpiReplicaSpecs"][role]["template"]["spec"]
    assert pod["serviceAccountName"] == "training"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {e["name"] for e in container["env"]} == {"PYTHONUNBUFFERED", "TF_CPP_MIN_LOG_LEVEL"}


def test_run_policy_is_configurable():
    policy = RunPolicy(
        backoff_limit=0, ttl_seconds_after_finished=60, active_deadline_seconds=None, clean_pod_policy="All"
    )
    job = render_mpijob(_spec(), AWS, NAME, run_policy=policy)
    assert job["spec"]["runPolicy"] == {"cleanPodPolicy": "All", "backoffLimit": 0, "ttlSecondsAfterFinished": 60}
    with pytest.raises(ValueError, match="clean_pod_policy"):
        RunPolicy(clean_pod_policy="Sometimes")


def test_cpu_workers_get_no_gpu_limit():
    job = render_mpijob(_spec(workers=2, gpus=0), AWS, NAME)
    assert job["spec"]["slotsPerWorker"] == 1
    assert "nvidia.com/gpu" not in _only_container(job, "Worker")["resources"]["limits"]
    assert launcher_command(_spec(workers=3, gpus=0))[:3] == ["horovodrun", "-np", "3"]


def test_gpu_and_slot_counts_must_agree(spec):
    with pytest.raises(WorkloadSpecError, match="4 GPU.*2 slot"):
        render_mpijob(spec.to_dict() | {"slots_per_replica": 2}, AWS, NAME)


def test_a_single_process_spec_is_refused():
    tf = training_spec(
        framework="tensorflow",
        data_uri="d",
        model_uri="m",
        checkpoint_uri="c",
        epochs=1,
        batch_size=1,
        learning_rate=0.1,
    )
    with pytest.raises(WorkloadSpecError, match="not distributed"):
        render_mpijob(tf, AWS, NAME)


@pytest.mark.parametrize("bad", ["Train", "1train", "train_mxnet", "train-", "x" * 60])
def test_job_names_are_checked(bad):
    with pytest.raises(WorkloadSpecError, match="MPIJob name"):
        check_job_name(bad, replicas=2)


def test_generated_names_are_valid_stable_and_distinct_per_try():
    first = job_name("train-mxnet", "dag/train/manual__2026-01-01T00:00:00+00:00/-1/1")
    assert first == job_name("train-mxnet", "dag/train/manual__2026-01-01T00:00:00+00:00/-1/1")
    assert first != job_name("train-mxnet", "dag/train/manual__2026-01-01T00:00:00+00:00/-1/2")
    assert first.startswith("train-mxnet-") and len(first) == len("train-mxnet-") + 8
    assert check_job_name(first, replicas=64) == first
    assert check_job_name(job_name("9_Odd NAME__" * 10, "k"), replicas=10)


def test_launcher_runs_on_cpu_nodes_without_the_gpu_toleration(job):
    pod = job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]
    assert "nodeSelector" not in pod and "tolerations" not in pod  # cannot land on (tainted) GPU nodes
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "role", "operator": "In", "values": ["inference", "system"]}]


def test_multi_gpu_workers_get_a_memory_backed_dev_shm(job):
    pod = job["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]
    (volume,) = pod["volumes"]
    assert volume["emptyDir"]["medium"] == "Memory" and volume["emptyDir"]["sizeLimit"]
    assert {"name": volume["name"], "mountPath": "/dev/shm"} in pod["containers"][0]["volumeMounts"]
    single = render_mpijob(_spec(workers=2, gpus=1), AWS, NAME)["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]
    assert "volumes" not in single
