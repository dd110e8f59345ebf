"""Task defaults every DAG of the project shares: owner, retries with exponential backoff,
a timeout on every task, and the one-line failure summary."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from eksml.callbacks import log_failure_summary


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
