"""Pods of a cluster outside EKS reach an S3-compatible store: its endpoint in their
environment, its keys from a Secret by ``envFrom`` (never in a spec); on EKS (the default)
nothing is added and IRSA gives access."""

from __future__ import annotations

import pytest

from eksml.kubernetes.manifests import render_mpijob
from eksml.kubernetes.operators import render_training_pod
from eksml.serving.manifests import render_deployment
from eksml.settings import Settings, SettingsError, load_settings
from eksml.specs import training_spec

EKS = Settings(profile="aws", store_uri="s3://eksml-bucket/store", image_registry="registry.test/eksml")
OWN_CLUSTER = EKS.replace(pod_store_endpoint_url="http://192.0.2.2:9000", pod_store_secret="store-keys")


def _containers(settings: Settings) -> list[dict]:
    uris = {"data_uri": "s3://b/d", "model_uri": "s3://b/m", "checkpoint_uri": "s3://b/c"}
    hyper = {"epochs": 1, "batch_size": 32, "learning_rate": 0.01}
    single = training_spec(framework="tensorflow", **uris, **hyper)
    distributed = training_spec(framework="mxnet", **uris, **hyper, workers=2, gpus=1)
    pod = render_training_pod(single, settings)
    job = render_mpijob(distributed, settings, "train-mxnet-0a1b2c3d")
    deployment = render_deployment(settings, "s3://b/models/v1", "v1")
    return [
        pod["spec"]["containers"][0],
        *(r["template"]["spec"]["containers"][0] for r in job["spec"]["mpiReplicaSpecs"].values()),
        deployment["spec"]["template"]["spec"]["containers"][0],
    ]


def test_every_workload_container_gets_the_endpoint_and_the_secret() -> None:
    containers = _containers(OWN_CLUSTER)
    assert len(containers) == 4  # training pod, MPI launcher, MPI worker, inference server
    for container in containers:
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["AWS_ENDPOINT_URL_S3"] == "http://192.0.2.2:9000"
        assert container["envFrom"] == [{"secretRef": {"name": "store-keys"}}]
        assert not any("SECRET" in name or "ACCESS_KEY" in name for name in env)


def test_on_eks_nothing_is_added() -> None:
    for container in _containers(EKS):
        assert "AWS_ENDPOINT_URL_S3" not in {e["name"] for e in container["env"]}
        assert not container.get("envFrom")


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("pod_store_secret", "Keys_With_Underscore", "pod_store_secret must be a Kubernetes Secret name"),
        ("pod_store_endpoint_url", "192.0.2.2:9000", "pod_store_endpoint_url must be an http"),
    ],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str) -> None:
    monkeypatch.setenv(f"EKSML_{name.upper()}", value)
    with pytest.raises(SettingsError, match=message):
        load_settings()
