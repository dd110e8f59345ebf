from __future__ import annotations

import pytest

from eksml.settings import SettingsError, load_settings


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("EKSML_PROFILE", "aws")
    monkeypatch.setenv("EKSML_STORE_URI", "s3://my-bucket/ml")
    monkeypatch.setenv("EKSML_SAGEMAKER_SUBNETS", "subnet-1, subnet-2")
    settings = load_settings()
    assert settings.profile == "aws"
    assert settings.models_root == "s3://my-bucket/ml/models/fashion-mnist"
    assert settings.sagemaker_subnets == ("subnet-1", "subnet-2")


def test_unknown_profile_is_refused(monkeypatch):
    monkeypatch.setenv("EKSML_PROFILE", "gcp")
    with pytest.raises(SettingsError, match="unknown profile 'gcp'"):
        load_settings()


def test_bad_store_and_unknown_key():
    with pytest.raises(SettingsError, match="store_uri must start with"):
        load_settings({"store_uri": "ftp://x"})
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings({"nope": 1})


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("training_service_account", "a b", "training_service_account must be a Kubernetes service account name"),
        ("image_tag", "0.1;rm -rf", "image_tag must be an image tag"),
        ("image_registry", "Registry With Spaces", "image_registry must be an image registry"),
        ("namespace", "Bad_Namespace", "namespace must be a Kubernetes namespace name"),
        ("inference_namespace", "x" * 64, "inference_namespace must be a Kubernetes namespace name"),
        ("cluster_name", "1cluster", "cluster_name must be an EKS cluster name"),
        ("inference_port", "http", "inference_port must be an integer, got 'http'"),
        ("inference_port", "70000", "inference_port must be within 1..65535"),
    ],
)
def test_settings_kubernetes_would_reject_are_refused(monkeypatch, name, value, message):
    monkeypatch.setenv(f"EKSML_{name.upper()}", value)
    with pytest.raises(SettingsError, match=message):
        load_settings()
