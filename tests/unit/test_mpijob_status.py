"""The phase read from an MPIJob's conditions, over the condition lists the MPI operator really
writes: it keeps one condition per type and flips older ones to "False" instead of removing
them (``setCondition``/``filterOutCondition`` in its ``mpi_job_controller_status.go``)."""

from __future__ import annotations

import pytest

from eksml.kubernetes.hooks import (
    CREATED,
    FAILED,
    PENDING,
    RESTARTING,
    RUNNING,
    SUCCEEDED,
    SUSPENDED,
    job_phase,
)


def set_condition(conditions: list[dict], ctype: str, status: str, reason: str, message: str = "") -> list[dict]:
    """The MPI operator's condition update: same type replaced, Running and Restarting exclusive,
    Running (and Failed) set to False when the job succeeds or fails."""
    kept = []
    for cond in conditions:
        if cond["type"] == ctype or {cond["type"], ctype} == {RUNNING, RESTARTING}:
            continue
        if ctype in (FAILED, SUCCEEDED) and cond["type"] in (RUNNING, FAILED):
            cond = {**cond, "status": "False"}
        kept.append(cond)
    return [
        *kept,
        {
            "type": ctype,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "lastUpdateTime": "2026-01-01T00:00:00Z",
        },
    ]


def job(conditions):
    return {
        "apiVersion": "kubeflow.org/v2beta1",
        "kind": "MPIJob",
        "metadata": {"name": "j"},
        "status": {"conditions": conditions},
    }


def history(*steps):
    """The phase after each (type, status, reason[, message]) step, from an empty status."""
    conditions: list[dict] = []
    phases = []
    for step in steps:
        conditions = set_condition(conditions, *step)
        phases.append(job_phase(job(conditions)))
    return phases


def test_unreconciled_job_is_pending():
    assert job_phase({"metadata": {"name": "j"}}).phase == PENDING
    assert job_phase({"status": {}}).phase == PENDING
    assert job_phase(job([])).phase == PENDING


def test_created_running_succeeded():
    phases = history(
        (CREATED, "True", "MPIJobCreated", "MPIJob ml/j is created."),
        (RUNNING, "True", "MPIJobRunning", "MPIJob ml/j is running."),
        (SUCCEEDED, "True", "MPIJobSucceeded", "MPIJob ml/j successfully completed."),
    )
    assert [p.phase for p in phases] == [CREATED, RUNNING, SUCCEEDED]
    assert [p.terminal for p in phases] == [False, False, True]
    assert phases[-1].describe() == "Succeeded (MPIJobSucceeded: MPIJob ml/j successfully completed.)"


def test_created_running_failed_with_the_launchers_reason():
    phases = history(
        (CREATED, "True", "MPIJobCreated"),
        (RUNNING, "True", "MPIJobRunning"),
        (FAILED, "True", "BackoffLimitExceeded/Error", "Job has reached the specified backoff limit: exit code 1"),
    )
    assert [p.phase for p in phases] == [CREATED, RUNNING, FAILED]
    assert phases[-1].terminal
    assert phases[-1].reason == "BackoffLimitExceeded/Error"
    assert "backoff limit" in phases[-1].message


def test_restarting_then_running_then_succeeded():
    phases = history(
        (CREATED, "True", "MPIJobCreated"),
        (RUNNING, "True", "MPIJobRunning"),
        (RESTARTING, "True", "MPIJobRestarting", "launcher restarted"),
        (RUNNING, "True", "MPIJobRunning"),
        (SUCCEEDED, "True", "MPIJobSucceeded"),
    )
    assert [p.phase for p in phases] == [CREATED, RUNNING, RESTARTING, RUNNING, SUCCEEDED]


def test_suspended_then_resumed():
    phases = history(
        (CREATED, "True", "MPIJobCreated"),
        (SUSPENDED, "True", "MPIJobSuspended", "MPIJob suspended"),
        (RUNNING, "False", "MPIJobSuspended"),
        (SUSPENDED, "False", "MPIJobResumed", "MPIJob resumed"),
        (RUNNING, "True", "MPIJobRunning"),
    )
    assert [p.phase for p in phases] == [CREATED, SUSPENDED, SUSPENDED, CREATED, RUNNING]


def test_evicted_worker_fails_a_running_job():
    phases = history(
        (CREATED, "True", "MPIJobCreated"),
        (RUNNING, "True", "MPIJobRunning"),
        (FAILED, "True", "MPIJobEvicted", "1/2 workers are evicted"),
    )
    assert phases[-1].phase == FAILED and phases[-1].message == "1/2 workers are evicted"


def test_launcher_success_outranks_a_later_eviction():
    conditions = set_condition(
        set_condition([], CREATED, "True", "MPIJobCreated"), SUCCEEDED, "True", "MPIJobSucceeded"
    )
    conditions.append(
        {"type": FAILED, "status": "True", "reason": "MPIJobEvicted", "message": "1/2 workers are evicted"}
    )
    assert job_phase(job(conditions)).phase == SUCCEEDED


@pytest.mark.parametrize("status", ["False", "Unknown"])
def test_only_true_conditions_count(status):
    assert job_phase(job([{"type": FAILED, "status": status}])).phase == PENDING
