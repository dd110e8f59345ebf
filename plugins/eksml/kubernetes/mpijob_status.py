"""The phase of an MPIJob, read from the ``status.conditions`` its operator maintains.

The MPI operator keeps one condition per type (``Created``, ``Running``, ``Restarting``,
``Suspended``, ``Succeeded``, ``Failed``) and flips their ``status`` between ``"True"`` and
``"False"``: a job that finished still lists ``Running`` (then ``"False"``), a resumed one
still lists ``Suspended``. Only conditions that are ``"True"`` count here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: A job the controller has not reconciled yet has no conditions at all.
PENDING = "Pending"
CREATED = "Created"
RUNNING = "Running"
RESTARTING = "Restarting"
SUSPENDED = "Suspended"
SUCCEEDED = "Succeeded"
FAILED = "Failed"

TERMINAL = frozenset({SUCCEEDED, FAILED})
#: Strongest first. Succeeded outranks Failed: the operator can mark a job Failed for an evicted
#: worker after its launcher already exited 0, and the launcher's exit code is the training result.
_PRECEDENCE = (SUCCEEDED, FAILED, SUSPENDED, RESTARTING, RUNNING, CREATED)


@dataclass(frozen=True)
class JobPhase:
    """Where a job stands, with the reason and message of the condition that decided it."""

    phase: str
    reason: str = ""
    message: str = ""

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL

    def describe(self) -> str:
        detail = ": ".join(part for part in (self.reason, self.message) if part)
        return f"{self.phase} ({detail})" if detail else self.phase


def job_phase(job: Mapping[str, Any]) -> JobPhase:
    """The phase of the MPIJob object ``job`` (as the API returns it)."""
    conditions = (job.get("status") or {}).get("conditions") or []
    active = {c.get("type"): c for c in conditions if str(c.get("status")) == "True"}
    for phase in _PRECEDENCE:
        if phase in active:
            condition = active[phase]
            return JobPhase(phase, condition.get("reason") or "", condition.get("message") or "")
    return JobPhase(PENDING)
