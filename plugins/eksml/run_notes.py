"""A run's note, the line the run page shows: what a training run, a failed run or a deployment
achieved, and how it is written.

The note goes through Airflow's public REST API (``PATCH .../dagRuns/{run_id}``), because a task
has no other way to write one in Airflow 3; it needs the HTTP connection the settings name
(``airflow_api_conn_id``, default ``eksml_airflow_api``: host = the API server's URL,
login/password of a user allowed to edit runs). ``scripts/airflow_standalone.py`` and the Docker
stack define it; without it the note is skipped with a log line, and the task's state, log and
links still tell the outcome.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from eksml.model_links import store_links
from eksml.settings import Settings

log = logging.getLogger(__name__)


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
