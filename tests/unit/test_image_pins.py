"""The aws profile pulls the project's images from the user's own registry, pinned by digest."""

from __future__ import annotations

import pytest

from eksml.preflight import ERROR, OK, check_image_pins
from eksml.settings import Settings, SettingsError, load_settings

DIGEST = "sha256:" + "ab" * 32
REGISTRY = "123456789012.dkr.ecr.us-west-2.amazonaws.com/eksml"


def test_a_pinned_image_is_pulled_by_its_digest():
    settings = Settings(image_registry=REGISTRY, image_digests=(f"inference@{DIGEST}",))
    assert settings.image("inference") == f"{REGISTRY}/inference:0.1.0@{DIGEST}"
    assert settings.image("tf-fashion-mnist") == f"{REGISTRY}/tf-fashion-mnist:0.1.0"


def test_digests_come_from_the_environment_and_bad_ones_are_refused(monkeypatch):
    monkeypatch.setenv("EKSML_IMAGE_DIGESTS", f"inference@{DIGEST}, tf-fashion-mnist@{DIGEST}")
    assert load_settings().image_digest("tf-fashion-mnist") == DIGEST
    with pytest.raises(SettingsError, match="<image>@sha256:<64 hex>"):
        Settings(image_digests=("inference:1.0",))


def test_preflight_refuses_the_placeholder_registry_and_unpinned_images():
    findings = {f.check: f for f in check_image_pins(Settings(profile="aws"), ["inference", "tf-fashion-mnist"])}
    assert findings["image registry"].level == ERROR and "EKSML_IMAGE_REGISTRY" in findings["image registry"].fix
    assert findings["image digests"].level == ERROR
    assert "inference, tf-fashion-mnist" in findings["image digests"].message
    pinned = Settings(profile="aws", image_registry=REGISTRY, image_digests=(f"inference@{DIGEST}",))
    assert [f.level for f in check_image_pins(pinned, ["inference"])] == [OK]
