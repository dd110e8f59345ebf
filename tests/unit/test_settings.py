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
