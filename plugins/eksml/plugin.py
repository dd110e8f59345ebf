"""The Airflow plugin of the project: a read-only page per model version in the API server
(metrics and plots of a ``file://`` store, which the outcome task's extra links open), and the
API-server check that refuses a trigger's unknown conf keys (:mod:`eksml.conf_keys`)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from eksml.conf_keys import UnknownConfKeysMiddleware
from eksml.version_pages import URL_PREFIX, create_app


class EksmlPlugin(AirflowPlugin):
    name = "eksml"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "eksml model versions"}]
    fastapi_root_middlewares = [{"middleware": UnknownConfKeysMiddleware, "name": "eksml unknown conf keys"}]
