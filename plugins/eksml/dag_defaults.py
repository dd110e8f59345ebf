"""Task defaults every DAG of the project shares: owner, retries with exponential backoff,
a timeout on every task, and the failure callback: a one-line summary in the log and the
run's note saying which task failed and why."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

log = logging.getLogger("eksml.failures")
#: Characters of the failure reason kept in the one-line summary.
REASON_CHARS = 600


def failure_reason(exception: BaseException | None, limit: int = REASON_CHARS) -> str:
    """The exception's message on one line: its first line and as many of its last lines as fit.

    A workload failure reads "<name> exited with code N; last lines:" followed by the lines that
    say why; those are what the summary must keep.
    """
    if exception is None:
        return "unknown"
    lines = [line.strip() for line in str(exception).splitlines() if line.strip()] or [type(exception).__name__]
    head, tail = lines[0][:limit], []
    for line in reversed(lines[1:]):
        if len(head) + sum(len(t) + 3 for t in tail) + len(line) + 3 > limit:
            break
        tail.insert(0, line)
    skipped = len(lines) - 1 - len(tail)
    return " | ".join([head, *([f"... {skipped} line(s) ..."] if skipped else []), *tail])


def log_failure_summary(context: dict[str, Any]) -> None:
    """One line per failure: what failed, on which try, why, and where its log is."""
    ti = context.get("task_instance") or context.get("ti")
    exception = context.get("exception")
    reason = failure_reason(exception)
    log.error(
        "FAILED dag=%s task=%s run=%s try=%s map_index=%s reason=%s log=%s",
        getattr(ti, "dag_id", "?"),
        getattr(ti, "task_id", "?"),
        getattr(ti, "run_id", "?"),
        getattr(ti, "try_number", "?"),
        getattr(ti, "map_index", -1),
        reason,
        getattr(ti, "log_url", "see the task log in the Airflow UI"),
    )
    if ti is not None:
        note_failure(ti.dag_id, ti.run_id, ti.task_id, reason)


def note_failure(dag_id: str, run_id: str, task_id: str, reason: str) -> None:
    """The run's note says it failed, in which task and why (the reason only in task logs before)."""
    from eksml.run_notes import failure_note, write_run_note
    from eksml.settings import resolve_settings

    try:
        write_run_note(dag_id, run_id, failure_note(task_id, reason), resolve_settings().airflow_api_conn_id)
    except Exception as exc:  # the note is a convenience: the failure stands without it
        log.warning("could not write the run note: %s", exc)


def default_args(**overrides: Any) -> dict[str, Any]:
    """``default_args`` for a DAG; keyword arguments replace or add entries."""
    return {
        "owner": "ml-platform",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=20),
        "execution_timeout": timedelta(hours=2),
        "on_failure_callback": log_failure_summary,
        **overrides,
    }
