"""Kubernetes versions on Amazon EKS: which are in standard support, billed extended support, or gone.

A version is in standard support for 14 months after EKS releases it, then in extended
support (billed per cluster hour on top of the standard price) for 12 more, then clusters are
upgraded automatically. A cluster is created only on a version in standard support; one in
extended support is allowed with a warning that gives the dates; anything past extended
support, or older than the table, is refused.

Source: Amazon EKS User Guide, "Understand the Kubernetes version lifecycle on EKS"
(docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html) and its release calendar
as listed on endoflife.date/amazon-eks. Table as of :data:`TABLE_DATE`; update it (and the
cluster-autoscaler pins in ``eksml.cluster.autoscaler``) when EKS releases a version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from eksml.errors import InvalidInput
from eksml.settings import Settings

TABLE_DATE = date(2026, 11, 29)

#: Newest version in standard support on :data:`TABLE_DATE`: the default of new clusters, spelled
#: once as the ``kubernetes_version`` setting's default (the settings sit below the cluster package).
DEFAULT_KUBERNETES_VERSION: str = Settings.kubernetes_version


@dataclass(frozen=True)
class EksVersion:
    version: str
    released: date
    end_of_standard: date
    end_of_extended: date


EKS_VERSIONS: dict[str, EksVersion] = {
    v.version: v
    for v in (
        EksVersion("1.30", date(2024, 5, 23), date(2025, 7, 23), date(2026, 7, 23)),
        EksVersion("1.31", date(2024, 9, 26), date(2025, 11, 26), date(2026, 11, 26)),
        EksVersion("1.32", date(2025, 1, 25), date(2026, 3, 23), date(2027, 3, 23)),
        EksVersion("1.33", date(2025, 5, 28), date(2026, 7, 29), date(2027, 7, 29)),
        EksVersion("1.34", date(2025, 10, 6), date(2026, 12, 2), date(2027, 12, 2)),
        EksVersion("1.35", date(2026, 1, 28), date(2027, 3, 27), date(2028, 3, 27)),
    )
}


class KubernetesVersionError(InvalidInput):
    """The version is out of EKS support, or unknown."""


def _key(version: str) -> tuple[int, int]:
    major, minor = version.split(".")
    return int(major), int(minor)


def check_kubernetes_version(version: str, today: date | None = None) -> list[str]:
    """Warnings for ``version`` on ``today``; raise :class:`KubernetesVersionError` to refuse it."""
    today = today or date.today()
    newest = max(EKS_VERSIONS, key=_key)
    info = EKS_VERSIONS.get(version)
    if info is None:
        try:
            newer = _key(version) > _key(newest)
        except ValueError:
            raise KubernetesVersionError(f"invalid Kubernetes version {version!r} (expected MAJOR.MINOR)") from None
        if newer:
            return [
                f"Kubernetes {version} is newer than the project's EKS support table (dated {TABLE_DATE}, "
                f"newest {newest}); add it to eksml/cluster/versions.py and pin a cluster-autoscaler for it"
            ]
        raise KubernetesVersionError(f"Kubernetes {version} is not supported by EKS; use {DEFAULT_KUBERNETES_VERSION}")
    if today > info.end_of_extended:
        raise KubernetesVersionError(
            f"Kubernetes {version} left EKS extended support on {info.end_of_extended} (EKS upgrades such "
            f"clusters itself); use {DEFAULT_KUBERNETES_VERSION} (standard support until "
            f"{EKS_VERSIONS[DEFAULT_KUBERNETES_VERSION].end_of_standard})"
        )
    if today > info.end_of_standard:
        return [
            f"Kubernetes {version} is in EKS extended support since {info.end_of_standard} (billed extra per "
            f"cluster hour; ends {info.end_of_extended}); use {DEFAULT_KUBERNETES_VERSION}"
        ]
    if (info.end_of_standard - today).days < 60:
        return [f"Kubernetes {version} leaves EKS standard support on {info.end_of_standard}"]
    return []
