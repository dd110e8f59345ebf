"""What a preflight check returns, and how it reaches AWS: shared by the checks of
:mod:`eksml.preflight` and of the production integrations (:mod:`eksml.preflight_integrations`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eksml.settings import Settings

ERROR, WARNING, OK = "error", "warning", "ok"


@dataclass(frozen=True)
class Finding:
    check: str
    level: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        return f"[{self.level}] {self.check}: {self.message}" + (f"\n    fix: {self.fix}" if self.fix else "")


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    estimate: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == ERROR]

    def text(self) -> str:
        return "\n".join([*map(str, self.findings), "estimated cost:", *(f"  {line}" for line in self.estimate)])


ClientFactory = Callable[[str], Any]


def aws_clients(settings: Settings) -> ClientFactory:
    """boto3 clients of the Airflow AWS connection (its endpoint, region, credentials)."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    def make(service: str) -> Any:
        return AwsBaseHook(
            aws_conn_id=settings.aws_conn_id, client_type=service, region_name=settings.region
        ).get_conn()

    return make


def error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ClientError (empty for any other exception)."""
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")
