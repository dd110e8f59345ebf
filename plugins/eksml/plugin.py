"""The Airflow plugin of the project: operator extra links shown on task instances."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class EksmlPlugin(AirflowPlugin):
    name = "eksml"
    operator_extra_links: list = []
