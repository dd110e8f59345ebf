"""The EKS support table: default version, refusals and warnings with their dates."""

from __future__ import annotations

from datetime import date

import pytest

from eksml.cluster.versions import (
    DEFAULT_KUBERNETES_VERSION,
    EKS_VERSIONS,
    TABLE_DATE,
    KubernetesVersionError,
    check_kubernetes_version,
)
from eksml.settings import Settings


def test_default_is_in_standard_support_on_the_table_date():
    assert Settings().kubernetes_version == DEFAULT_KUBERNETES_VERSION == "1.35"
    info = EKS_VERSIONS[DEFAULT_KUBERNETES_VERSION]
    assert info.released <= TABLE_DATE < info.end_of_standard
    assert check_kubernetes_version(DEFAULT_KUBERNETES_VERSION, TABLE_DATE) == []


def test_extended_support_is_warned_with_its_dates():
    (warning,) = check_kubernetes_version("1.33", date(2026, 11, 29))
    assert "extended support since 2026-07-29" in warning and "ends 2027-07-29" in warning


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("1.31", "left EKS extended support on 2026-11-26"),
        ("1.29", "not supported by EKS"),
        ("one.two", "invalid Kubernetes version"),
    ],
)
def test_out_of_support_versions_are_refused(version, message):
    with pytest.raises(KubernetesVersionError, match=message):
        check_kubernetes_version(version, date(2026, 11, 29))


def test_a_version_newer_than_the_table_is_allowed_with_a_warning():
    (warning,) = check_kubernetes_version("1.36", TABLE_DATE)
    assert "newer than the project's EKS support table" in warning and str(TABLE_DATE) in warning


def test_every_supported_version_has_a_pinned_autoscaler():
    from eksml.cluster.autoscaler import image_for

    for version in EKS_VERSIONS:
        assert image_for(version).endswith(f":v{version}.{image_for(version).rsplit('.', 1)[1]}")


def test_cluster_creation_refuses_a_version_past_extended_support():
    from eksml.cluster.config import ClusterConfigError
    from eksml.cluster.request import ClusterRequest, build_cluster_configs

    req = ClusterRequest.from_settings(Settings(store_uri="s3://ml-store-bucket/eksml"), kubernetes_version="1.29")
    with pytest.raises(ClusterConfigError, match="not supported by EKS"):
        build_cluster_configs(req)
