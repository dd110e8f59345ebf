"""Task links to a training or serving pod's logs in CloudWatch Logs.

With ``settings.cloudwatch_logs`` on, the ``amazon-cloudwatch-observability`` EKS add-on runs
Fluent Bit on every node and ships each container's log to the log group
``/aws/containerinsights/<cluster>/application``, one event per line with the pod's name in
its ``kubernetes`` metadata (Container Insights' documented layout). The provider has no link
for it, so this follows its ``BaseAwsLink`` (XCom-persisted, partition-aware console domain)
and opens that group filtered by the pod (or MPIJob) name, which outlives the pod itself.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink

from eksml.cluster.iam import partition_for
from eksml.settings import Settings


def application_log_group(cluster_name: str) -> str:
    return f"/aws/containerinsights/{cluster_name}/application"


def _console_escape(text: str) -> str:
    """The CloudWatch console's fragment escaping: URL-encode, then '%' as '$25'."""
    return quote(text, safe="").replace("%", "$25")


class PodLogsLink(BaseAwsLink):
    """The pod's (or MPIJob's pods') log events in CloudWatch Logs."""

    name = "CloudWatch Pod Logs"
    key = "eksml_pod_logs"
    format_str = (
        BASE_AWS_CONSOLE_LINK
        + "/cloudwatch/home?region={region_name}#logsV2:log-groups/log-group/{log_group}"
        + "/log-events$3FfilterPattern$3D{pod_filter}"
    )

    @classmethod
    def persist_empty(cls, context: Any) -> None:
        """No log stream to open (a local process, or pod logs not shipped): an empty value, as the
        task runner looks every extra link up when the task ends, and a key never pushed logs
        "ERROR XCom not found" in a run that succeeded."""
        context["ti"].xcom_push(key=cls.key, value=None)

    @classmethod
    def persist_for(cls, context: Any, operator: Any, settings: Settings, cluster_name: str, pod_name: str) -> None:
        """Record the link when the settings ship pod logs to CloudWatch (otherwise there is nothing to open)."""
        if not settings.cloudwatch_logs or not cluster_name:
            cls.persist_empty(context)
            return
        cls.persist(
            context=context,
            operator=operator,
            region_name=settings.region,
            aws_partition=partition_for(settings.region),
            log_group=_console_escape(application_log_group(cluster_name)),
            pod_filter=_console_escape(f'"{pod_name}"'),
        )
