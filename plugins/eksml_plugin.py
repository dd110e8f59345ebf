"""Airflow plugin entry point: registers the eksml plugin (operator extra links)."""

from eksml.plugin import EksmlPlugin  # noqa: F401 - Airflow discovers the AirflowPlugin subclass here
