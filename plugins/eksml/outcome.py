"""What a training run achieved, said where the user looks: the grid, the run's note, the task's
extra links.

The ``outcome`` task ends every training run that registered something. Its state says the
result at a glance (green: a new champion; skipped: the gate refused), its run note
(:mod:`eksml.run_notes`) and log line carry the version and the test accuracy, and its extra
links (:mod:`eksml.model_links`) open the model version, its ``metrics.json`` and its plots in
the store (the S3 console for ``s3://`` stores, the plugin's page of :mod:`eksml.version_pages`
for ``file://`` ones).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from eksml.drops import mark_accounted
from eksml.model_links import (
    LINKS_KEY,
    ModelMetricsLink,
    ModelPlotsLink,
    ModelVersionLink,
    PerClassPlotLink,
    store_links,
)
from eksml.run_notes import note_markdown, write_run_note
from eksml.settings import FROM_SETTINGS, FromSettings, Settings, SettingsMixin

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)


def summarize(registered: list[dict[str, Any]] | None, pointer: dict[str, Any] | None) -> dict[str, Any]:
    """Promoted or refused, with version and test accuracy of the best candidate and the champion."""
    if not registered:
        return {"outcome": "nothing registered", "headline": "no model version registered"}
    best = max(registered, key=lambda r: r["test_accuracy"])
    promoted = bool(pointer) and pointer.get("version") in {r["version"] for r in registered}
    if promoted:
        best = next(r for r in registered if r["version"] == pointer["version"])
    summary = {
        "outcome": "promoted" if promoted else "refused",
        "version": best["version"],
        "framework": best.get("framework"),
        "uri": best["uri"],
        "test_accuracy": best["test_accuracy"],
        "champion_version": best.get("champion_version"),
        "champion_accuracy": best.get("champion_accuracy"),
        "candidates": [{"version": r["version"], "test_accuracy": r["test_accuracy"]} for r in registered],
    }
    versus = ""
    if summary["champion_version"]:
        versus = f" vs champion {summary['champion_version']} at {summary['champion_accuracy']:.4f}"
    verb = "promoted to champion" if promoted else "refused by the gate"
    summary["headline"] = f"{verb}: {best['version']} test accuracy {best['test_accuracy']:.4f}{versus}"
    return summary


class RunOutcomeOperator(SettingsMixin, BaseOperator):
    """Say what the run achieved: success when it promoted a champion, skipped when refused.

    Reads the ``register`` and ``promote`` results, writes the run note, pushes the links,
    and returns the summary (also the last line of its log).

    :param api_conn_id: HTTP connection to Airflow's REST API; default the settings' one.
    :param settings: configuration; ``None`` resolves it at run time.
    """

    operator_extra_links = (ModelVersionLink(), ModelMetricsLink(), ModelPlotsLink(), PerClassPlotLink())
    ui_color = "#e8f5e9"

    def __init__(
        self,
        *,
        register_task_id: str = "register",
        promote_task_id: str = "promote",
        validate_task_id: str = "validate_params",
        api_conn_id: str | FromSettings = FROM_SETTINGS,
        settings: Settings | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.register_task_id = register_task_id
        self.promote_task_id = promote_task_id
        self.validate_task_id = validate_task_id
        self.api_conn_id = api_conn_id
        self.settings = settings

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        settings = self.resolved_settings()
        ti = context["ti"]
        summary = summarize(ti.xcom_pull(task_ids=self.register_task_id), ti.xcom_pull(task_ids=self.promote_task_id))
        links = store_links(summary["uri"], settings.region) if "uri" in summary else {}
        ti.xcom_push(key=LINKS_KEY, value=links)
        ti.xcom_push(key="summary", value=summary)
        dag_run = context["dag_run"]
        drops = (ti.xcom_pull(task_ids=self.validate_task_id) or {}).get("drops")
        if mark_accounted(context.get("asset_state_store"), drops, dag_run.run_id):
            for line in drops["lines"]:
                self.log.info("data drops: %s", line)
        try:
            # A run that registered nothing keeps the note its first task may have written.
            if "uri" in summary:
                api = settings.airflow_api_conn_id if self.api_conn_id is FROM_SETTINGS else self.api_conn_id
                note = note_markdown(summary, links, (drops or {}).get("lines", []))
                write_run_note(dag_run.dag_id, dag_run.run_id, note, api)
        except Exception as exc:  # the note is a convenience: the outcome stands without it
            log.warning("could not write the run note: %s", exc)
        self.log.info("OUTCOME %s", summary["headline"])
        for name, url in links.items():
            self.log.info("  %-14s %s", name, url)
        if summary["outcome"] != "promoted":
            raise AirflowSkipException(summary["headline"])
        return summary
