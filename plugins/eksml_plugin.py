"""Airflow plugin entry point: registers the eksml plugin (the model-version pages)."""

from eksml.plugin import EksmlPlugin  # noqa: F401 - Airflow discovers the AirflowPlugin subclass here
