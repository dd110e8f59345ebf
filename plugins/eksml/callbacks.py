"""Task callbacks shared by every DAG."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("eksml.failures")


def log_failure_summary(context: dict[str, Any]) -> None:
    """One line per failure: what failed, on which try, why, and where its log is."""
    ti = context.get("task_instance") or context.get("ti")
    exception = context.get("exception")
    reason = str(exception).splitlines()[0][:300] if exception else "unknown"
    log.error(
        "FAILED dag=%s task=%s run=%s try=%s map_index=%s reason=%s log=%s",
        getattr(ti, "dag_id", "?"), getattr(ti, "task_id", "?"), getattr(ti, "run_id", "?"),
        getattr(ti, "try_number", "?"), getattr(ti, "map_index", -1), reason,
        getattr(ti, "log_url", "see the task log in the Airflow UI"),
    )
