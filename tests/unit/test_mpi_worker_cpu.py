"""``mpi_worker_cpu`` sets the CPU request of every MPI worker (nodes smaller than a GPU node
group's, where the workers and the launcher must fit together); the launcher, the single
training pod, memory and the GPU count are untouched."""

from __future__ import annotations

import pytest

from eksml.kubernetes.manifests import render_mpijob
from eksml.kubernetes.operators import render_training_pod
from eksml.settings import Settings, SettingsError, load_settings
from eksml.specs import training_spec

EKS = Settings(profile="aws", store_uri="s3://eksml-bucket/store", image_registry="registry.test/eksml")
URIS = {"data_uri": "s3://b/d", "model_uri": "s3://b/m", "checkpoint_uri": "s3://b/c"}
HYPER = {"epochs": 1, "batch_size": 32, "learning_rate": 0.01}


def _resources(settings: Settings, gpus: int) -> dict[str, dict]:
    pod = render_training_pod(training_spec(framework="tensorflow", **URIS, **HYPER, gpus=gpus), settings)
    job = render_mpijob(training_spec(framework="mxnet", **URIS, **HYPER, workers=2, gpus=gpus), settings, "t-0a1b2c3d")
    replicas = job["spec"]["mpiReplicaSpecs"]
    return {
        "pod": pod["spec"]["containers"][0]["resources"],
        "launcher": replicas["Launcher"]["template"]["spec"]["containers"][0]["resources"],
        "worker": replicas["Worker"]["template"]["spec"]["containers"][0]["resources"],
    }


@pytest.mark.parametrize("gpus", [0, 1])
def test_it_sets_the_workers_cpu_request_only(gpus: int) -> None:
    default = _resources(EKS, gpus)
    small = _resources(EKS.replace(mpi_worker_cpu="250m"), gpus)
    assert default["worker"]["requests"]["cpu"] == ("4" if gpus else "2")
    assert small["worker"]["requests"]["cpu"] == "250m"
    assert small["worker"]["requests"]["memory"] == default["worker"]["requests"]["memory"]
    assert small["worker"]["limits"] == default["worker"]["limits"]  # memory, and the GPUs when asked
    assert small["launcher"] == default["launcher"] and small["pod"] == default["pod"]


@pytest.mark.parametrize("value", ["0", "0m", "-1", "1Gi", "two"])
def test_a_bad_cpu_quantity_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("EKSML_MPI_WORKER_CPU", value)
    with pytest.raises(SettingsError, match="mpi_worker_cpu must be a positive CPU quantity"):
        load_settings()


def test_the_environment_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EKSML_MPI_WORKER_CPU", "0.5")
    assert load_settings().mpi_worker_cpu == "0.5"
