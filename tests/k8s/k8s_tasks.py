"""Running one Airflow task's execute/defer/resume cycle in the test process.

A task runner would hand the deferral to the triggerer, which runs the trigger until its
first event, and then resume the task with it; :func:`run_task` does the same in line, with
the real operator and the real trigger (both through their hooks and the Airflow connection),
so only the scheduling around them is left out.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any


def task_context(
    task_id: str, try_number: int = 1, run_id: str = "manual__2026-01-01T00:00:00+00:00"
) -> dict[str, Any]:
    """The parts of a task context the operators read; XCom pushes are kept in ``ti.xcom``."""
    xcom: dict[str, Any] = {}
    ti = SimpleNamespace(
        dag_id="fashion_mnist_training",
        task_id=task_id,
        run_id=run_id,
        map_index=-1,
        try_number=try_number,
        start_date=datetime.now(UTC),
        xcom=xcom,
        xcom_push=lambda key, value: xcom.__setitem__(key, value),
    )
    return {"ti": ti, "task_instance": ti, "run_id": run_id, "dag": SimpleNamespace(dag_id=ti.dag_id)}


def first_event(trigger: Any, timeout: float) -> dict[str, Any]:
    async def take() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError(f"{type(trigger).__name__} ended without an event")

    return asyncio.run(asyncio.wait_for(take(), timeout))


def run_task(operator: Any, context: dict[str, Any], timeout: float = 120.0, max_deferrals: int = 10) -> Any:
    """``execute``, then for each deferral: the trigger's first event, then the resume method."""
    from airflow.sdk.exceptions import TaskDeferred

    def call() -> Any:
        return operator.execute(context)

    for _ in range(max_deferrals):
        try:
            return call()
        except TaskDeferred as deferred:
            event = first_event(deferred.trigger, timeout)
            method = getattr(operator, deferred.method_name)
            call = functools.partial(method, context, event)
    raise AssertionError(f"{operator.task_id} deferred more than {max_deferrals} times")
