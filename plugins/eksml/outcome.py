"""What a training run achieved, said where the user looks: the grid, the run's note, the task's
extra links.

The ``outcome`` task ends every training run that registered something. Its state says the
result at a glance (green: a new champion; skipped: the gate refused), its run note and log
line carry the version and the test accuracy, and its extra links open the model version, its
``metrics.json`` and its plots in the store (the S3 console for ``s3://`` stores).

For a ``file://`` store the links open a read-only page per version that the project's plugin
serves in the Airflow API server (:func:`create_app`, mounted at :data:`URL_PREFIX`): the UI
shows an extra link only when it is http(s) or on its own origin, so ``file://`` links would
be dropped. Only what a person reads is served (metadata, metrics, evaluation, the PNG plots)
of registered versions; model weights never are, and no path outside the model store can be named.

The run note goes through Airflow's public REST API (``PATCH .../dagRuns/{run_id}``), because
a task has no other way to write one in Airflow 3; it needs the HTTP connection the settings
name (``airflow_api_conn_id``, default ``eksml_airflow_api``: host = the API server's URL,
login/password of a user allowed to edit runs). ``scripts/airflow_standalone.py`` and the
Docker stack define it; without it the note is skipped with a log line, and the task's state,
log and links still tell the outcome.
"""

from __future__ import annotations

import html
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlparse

from airflow.sdk import BaseOperator, BaseOperatorLink

from eksml.drops import mark_accounted
from eksml.layout import METRICS, PER_CLASS_ACCURACY, PLOTS, READABLE, TRAINING_CURVES, ModelVersion
from eksml.settings import FROM_SETTINGS, FromSettings, Settings, SettingsMixin

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.types import TaskInstanceKey

log = logging.getLogger(__name__)

#: XCom key holding the links of the outcome task.
LINKS_KEY = "model_links"


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


def note_head(summary: dict[str, Any], links: dict[str, str]) -> list[str]:
    """The note's first line, all the run page shows of a note (one line, cut at its width): the
    outcome, the version (a link to its page) and the accuracies; then the champion's version."""
    if "version" not in summary:
        return [f"**{summary['outcome'].upper()}** {summary['headline']}"]
    version = summary["version"]
    named = f"[{version}]({links['Model version']})" if links.get("Model version") else version
    first = f"**{summary['outcome'].upper()}** {named} test accuracy {summary['test_accuracy']:.4f}"
    if not summary.get("champion_version"):
        return [first]
    first += f" vs champion {summary['champion_accuracy']:.4f}"
    return [first, f"champion: {summary['champion_version']}"]


def failure_note(task_id: str, reason: str) -> str:
    """The note of a failed run: the task and the reason's first line, then the whole reason."""
    first, _, rest = reason.partition(" | ")
    note = f"**FAILED** in {task_id}: {first}"
    return (note + (f"\n\n{reason}" if rest else ""))[:NOTE_LIMIT]


def deployment_note(pointer: dict[str, Any], links: dict[str, str]) -> str:
    """The note of a deployment run: the version that went live and its test accuracy."""
    accuracy = pointer.get("test_accuracy")
    first = f"**DEPLOYED** {pointer['version']}" + (f" test accuracy {accuracy:.4f}" if accuracy is not None else "")
    lines = [first + " is live"]
    if pointer.get("requested"):
        lines.append("deployed by request (rollback or pin): it is now the champion")
    if links:
        lines.append(" · ".join(f"[{name}]({url})" for name, url in links.items()))
    return "\n\n".join(lines)[:NOTE_LIMIT]


def note_deployment(dag_run: Any, pointer: dict[str, Any], settings: Settings) -> None:
    """Write the deployment run's note (a convenience: a failure to write it is logged only)."""
    links = store_links(pointer["uri"], settings.region) if pointer.get("uri") else {}
    try:
        write_run_note(dag_run.dag_id, dag_run.run_id, deployment_note(pointer, links), settings.airflow_api_conn_id)
    except Exception as exc:
        log.warning("could not write the run note: %s", exc)


#: Most characters of a run note (Airflow's API refuses longer ones).
NOTE_LIMIT = 1000


def note_markdown(summary: dict[str, Any], links: dict[str, str], data_lines: list[str] = ()) -> str:
    """The run note (Markdown, at most :data:`NOTE_LIMIT` characters as the API allows).

    ``data_lines`` name the upstream drops the run trained on or superseded; when they do not
    all fit, the note says how many more the first task's log names."""
    lines = note_head(summary, links)
    others = [c for c in summary.get("candidates", []) if c["version"] != summary.get("version")]
    lines += [f"- also registered: {c['version']} ({c['test_accuracy']:.4f})" for c in others]
    if links:
        lines.append(" · ".join(f"[{name}]({url})" for name, url in links.items()))

    def compose(shown: int) -> str:
        more = len(data_lines) - shown
        data = [f"- {line}" for line in data_lines[:shown]]
        data += [f"- {more} more drops: see the validate_params log"] if more else []
        return "\n\n".join([*lines, *data])

    shown = len(data_lines)
    while shown and len(compose(shown)) > NOTE_LIMIT:
        shown -= 1
    return compose(shown)[:NOTE_LIMIT]


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


# --- the version page (file:// stores) -------------------------------------------------------
#: Where the app is mounted in the API server; links of the outcome task point here.
URL_PREFIX = "/eksml"
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def version_url(version: str, name: str = "") -> str:
    """Same-origin URL of a version's page (``name`` empty) or of one of its served files."""
    return f"{URL_PREFIX}/models/{version}/{name}"


def _models_root() -> Path | None:
    from urllib.parse import urlparse

    from eksml.settings import resolve_settings

    settings = resolve_settings()
    if not settings.models_root.startswith("file://"):
        return None
    return Path(urlparse(settings.models_root).path)


def _version_dir(version: str) -> Path:
    from fastapi import HTTPException

    root = _models_root()
    if root is None:
        raise HTTPException(404, "the model store is not a local folder: use the S3 console links")
    if not _VERSION.match(version) or not ModelVersion(root / version).registered:
        raise HTTPException(404, f"no registered version {version!r}")
    return root / version


def version_page(version: str, metadata: dict[str, Any]) -> str:
    """The HTML of a version: headline metrics, the plots inline, links to the JSON files."""
    metrics = metadata.get("metrics") or {}
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in metrics.items()
        if k != "per_class_accuracy"
    )
    plots = "".join(
        f'<h2>{name}</h2><img src="{name}" alt="{name}" style="max-width:100%">'
        for name in PLOTS
        if name in (metadata.get("files") or PLOTS)
    )
    files = " · ".join(f'<a href="{name}">{name}</a>' for name in READABLE if name not in PLOTS)
    title = html.escape(f"{version} ({metadata.get('framework')}, run {metadata.get('run_id')})")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(version)}</title></head>"
        f"<body style='font-family:sans-serif'><h1>{title}</h1><p>{files}</p><table>{rows}</table>"
        f"{plots}</body></html>"
    )


def create_app():
    """The FastAPI sub-application the plugin registers."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse, HTMLResponse

    app = FastAPI(title="eksml model versions", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/models/{version}/", response_class=HTMLResponse)
    def page(version: str) -> str:
        return version_page(version, ModelVersion(_version_dir(version)).metadata() or {})

    @app.get("/models/{version}/{name}")
    def file(version: str, name: str) -> FileResponse:
        if name not in READABLE:
            raise HTTPException(404, f"{name!r} is not served (only metadata, metrics, evaluation and plots)")
        path = _version_dir(version) / name
        if not path.is_file():
            raise HTTPException(404, f"{version} has no {name}")
        return FileResponse(path, media_type=READABLE[name])

    return app


def write_run_note(dag_id: str, run_id: str, note: str, conn_id: str) -> bool:
    """Set the run's note through the REST API; False (and a log line) when no connection is set."""
    import httpx
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        log.info("no connection %s: the run note is not written (the outcome task's state and log say it)", conn_id)
        return False
    base = (conn.host or "").rstrip("/")
    if conn.port and base.count(":") < 2:
        base = f"{base}:{conn.port}"
    token = httpx.post(f"{base}/auth/token", json={"username": conn.login, "password": conn.password}, timeout=30)
    token.raise_for_status()
    response = httpx.patch(
        f"{base}/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}",
        params={"update_mask": "note"},
        json={"note": note},
        timeout=30,
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
    )
    response.raise_for_status()
    return True


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
