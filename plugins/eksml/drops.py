"""Which upstream data drops an asset-triggered training run accounts for.

Airflow's scheduler does not give every training-data event a run of its own. It keeps one
queue row per (asset, DAG) (``AssetDagRunQueue``, primary key ``asset_id, target_dag_id``); an
event posted while that row waits, e.g. while the DAG is at ``max_active_runs``, is merged into
it and keeps the row's first ``created_at`` (``AssetManager._queue_dagruns_nonpartitioned_slow_path``).
The run the row creates consumes only the events up to that time and deletes the row
(``SchedulerJobRunner._create_dag_runs_asset_triggered`` in Airflow 3.3.2), so the later events
start no run; the next event's run lists them among its triggering events.

So a run does not trust its triggering events alone. It reads every training-data event
announced since the newest one an earlier run accounted for (a ledger kept in the asset's own
state store, written when a run has trained), trains on the newest drop, and names every older
one as superseded; events it lists that an earlier run already handled are named as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eksml.assets import DataEventError, validate_data_event_extra

#: Key of the ledger in the training-data asset's state store.
LEDGER_KEY = "accounted_through"


@dataclass(frozen=True)
class Drop:
    """One training-data event: when it was announced and the data it names (None: the settings'
    source), or why its ``extra`` names nothing usable."""

    timestamp: datetime
    uri: str | None
    problem: str | None = None

    @classmethod
    def of(cls, event: Any) -> Drop:
        try:
            return cls(event.timestamp, validate_data_event_extra(getattr(event, "extra", None)))
        except DataEventError as exc:
            return cls(event.timestamp, None, str(exc))

    @property
    def label(self) -> str:
        return f"{self.uri or 'the configured source'} (event at {self.timestamp.isoformat()})"

    def to_dict(self) -> dict[str, Any]:
        return {"timestamp": self.timestamp.isoformat(), "uri": self.uri, "problem": self.problem}


@dataclass(frozen=True)
class DropAccount:
    """What one run does with the drops announced since the ledger: train one, name the rest."""

    trained: Drop | None
    superseded: list[Drop] = field(default_factory=list)
    already: list[Drop] = field(default_factory=list)
    accounted_by: str | None = None

    def lines(self) -> list[str]:
        """One line per drop, for the log and the run note."""
        lines = []
        if self.trained:
            lines.append(f"trains on drop {self.trained.label}")
        newest = (self.trained.uri or "the configured source") if self.trained else None
        for d in self.superseded:
            fate = f"malformed ({d.problem}), not trained" if d.problem else f"superseded by {newest}"
            lines.append(f"drop {d.label}: {fate}")
        lines += [f"drop {d.label}: already accounted for by run {self.accounted_by}" for d in self.already]
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "trained": self.trained and self.trained.to_dict(),
            "superseded": [d.to_dict() for d in self.superseded],
            "already": [d.to_dict() for d in self.already],
            "accounted_by": self.accounted_by,
            "lines": self.lines(),
        }


def account(triggering: list[Drop], announced: list[Drop], ledger: dict[str, Any] | None) -> DropAccount | None:
    """The account of a run triggered by ``triggering``, given every event ``announced`` since the
    oldest of them or the ledger's, whichever is older; None for a run no event triggered."""
    if not triggering:
        return None
    floor = datetime.fromisoformat(ledger["timestamp"]) if ledger else None
    oldest = min(d.timestamp for d in triggering)
    by_time = {d.timestamp: d for d in [*triggering, *announced]}
    pending = [d for t, d in sorted(by_time.items()) if (t > floor if floor is not None else t >= oldest)]
    already = [d for d in sorted(triggering, key=lambda d: d.timestamp) if floor is not None and d.timestamp <= floor]
    accounted_by = ledger.get("run_id") if ledger else None
    if not pending:
        return DropAccount(None, already=already, accounted_by=accounted_by)
    if pending[-1].problem:  # the newest drop is the one to train: its event must name usable data
        raise DataEventError(pending[-1].problem)
    return DropAccount(pending[-1], superseded=pending[:-1], already=already, accounted_by=accounted_by)


def account_from_context(triggering_events: Any, inlet_events: Any, asset_state_store: Any) -> DropAccount | None:
    """:func:`account` from a task's ``triggering_asset_events``, ``inlet_events`` and
    ``asset_state_store`` (the task needs the training-data asset among its inlets)."""
    from eksml.assets import TRAINING_DATA

    triggering = [Drop.of(e) for events in (triggering_events or {}).values() for e in events]
    if not triggering:
        return None
    ledger = asset_state_store[TRAINING_DATA].get(LEDGER_KEY) if asset_state_store is not None else None
    since = datetime.fromisoformat(ledger["timestamp"]) if ledger else min(d.timestamp for d in triggering)
    announced = [Drop.of(e) for e in inlet_events[TRAINING_DATA].after(since.isoformat())] if inlet_events else []
    return account(triggering, announced, ledger)


def mark_accounted(asset_state_store: Any, account_dict: dict[str, Any] | None, run_id: str) -> bool:
    """After a run trained: every drop up to the one it trained is accounted for (the ledger).

    ``account_dict`` is :meth:`DropAccount.to_dict` as the first task returned it; False when
    the run was not triggered by drops."""
    from eksml.assets import TRAINING_DATA

    trained = (account_dict or {}).get("trained")
    if not trained:
        return False
    asset_state_store[TRAINING_DATA].set(LEDGER_KEY, {**trained, "run_id": run_id})
    return True
