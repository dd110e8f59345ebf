"""Browser links to a model version, its metrics and its plots: what the outcome task pushes, and
the extra links of its task in the grid.

``s3://`` stores link the S3 console; ``file://`` stores link the version's page
(:mod:`eksml.version_pages`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar
from urllib.parse import quote, urlparse

from airflow.sdk import BaseOperator, BaseOperatorLink

from eksml.layout import METRICS, PER_CLASS_ACCURACY, TRAINING_CURVES
from eksml.version_pages import version_url

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey

#: XCom key holding the links of the outcome task.
LINKS_KEY = "model_links"


def store_links(version_uri: str, region: str) -> dict[str, str]:
    """Browser links to a model version, its metrics and its plots.

    ``s3://`` stores link the S3 console; ``file://`` stores link the version's page that the
    project's plugin serves in the Airflow API server (same origin: the UI drops ``file://``
    links, and a browser elsewhere could not open them anyway).
    """
    base = version_uri.rstrip("/")
    if base.startswith("s3://"):
        parsed = urlparse(base)
        bucket, key = parsed.netloc, parsed.path.lstrip("/")
        console = "https://s3.console.aws.amazon.com/s3"
        folder = f"{console}/buckets/{bucket}?region={region}&prefix={quote(key + '/')}"
        obj = f"{console}/object/{bucket}?region={region}&prefix="
        return {
            "Model version": folder,
            "Metrics": obj + quote(f"{key}/{METRICS}"),
            "Plots": obj + quote(f"{key}/{TRAINING_CURVES}"),
            "Per-class plot": obj + quote(f"{key}/{PER_CLASS_ACCURACY}"),
        }
    version = base.rsplit("/", 1)[-1]
    return {
        "Model version": version_url(version),
        "Metrics": version_url(version, METRICS),
        "Plots": version_url(version, TRAINING_CURVES),
        "Per-class plot": version_url(version, PER_CLASS_ACCURACY),
    }


class _StoreLink(BaseOperatorLink):
    """One link the outcome task pushed in XCom under :data:`LINKS_KEY` (empty before it ran)."""

    label: ClassVar[str] = ""

    @property
    def name(self) -> str:
        return self.label

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        links = XCom.get_value(ti_key=ti_key, key=LINKS_KEY) or {}
        return links.get(self.label, "")


class ModelVersionLink(_StoreLink):
    label = "Model version"


class ModelMetricsLink(_StoreLink):
    label = "Metrics"


class ModelPlotsLink(_StoreLink):
    label = "Plots"


class PerClassPlotLink(_StoreLink):
    label = "Per-class plot"
