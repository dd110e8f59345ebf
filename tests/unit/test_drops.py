"""The account a run gives of the upstream drops announced since the last one trained.

The scheduler's part (which events a run lists) is exercised against the real scheduler in
tests/e2e/test_asset_drops.py; these cases pin the accounting rules themselves.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from eksml.assets import DataEventError
from eksml.drops import Drop, account
from eksml.run_notes import NOTE_LIMIT, note_markdown

T0 = datetime(2026, 12, 7, 1, 0, tzinfo=timezone.utc)


def drop(n: int, uri: str | None = None) -> Drop:
    return Drop(T0 + timedelta(seconds=n), uri or f"/drops/{n}")


def test_a_run_created_for_one_event_trains_the_newest_announced_and_names_the_others():
    result = account([drop(1)], [drop(1), drop(2), drop(3)], None)
    assert result.trained == drop(3)
    assert result.superseded == [drop(1), drop(2)]
    lines = result.lines()
    assert lines[0].startswith("trains on drop /drops/3")
    assert [line for line in lines if "superseded by /drops/3" in line] == lines[1:]


def test_events_an_earlier_run_accounted_for_are_named_with_that_run_not_retrained():
    ledger = {**drop(3).to_dict(), "run_id": "asset_triggered__A"}
    result = account([drop(2), drop(3), drop(4)], [drop(3), drop(4)], ledger)
    assert result.trained == drop(4) and result.superseded == []
    assert result.already == [drop(2), drop(3)]
    assert all("already accounted for by run asset_triggered__A" in line for line in result.lines()[1:])


def test_nothing_new_means_nothing_to_train():
    ledger = {**drop(3).to_dict(), "run_id": "A"}
    result = account([drop(2), drop(3)], [drop(3)], ledger)
    assert result.trained is None and len(result.lines()) == 2


def test_runs_no_event_triggered_have_no_account():
    assert account([], [drop(1)], None) is None


def test_a_malformed_newest_event_fails_and_an_older_one_is_named():
    bad = Drop.of(SimpleNamespace(timestamp=T0 + timedelta(seconds=9), extra={"uri": 5}))
    with pytest.raises(DataEventError, match="must be a string"):
        account([bad], [bad], None)
    result = account([drop(1)], [drop(1), bad, drop(10)], None)
    assert result.trained == drop(10)
    assert any("malformed" in line and "not trained" in line for line in result.lines())


def test_the_note_names_every_drop_that_fits_and_counts_the_rest():
    summary = {"outcome": "promoted", "headline": "promoted to champion: v1", "version": "v1", "test_accuracy": 0.8}
    result = account([drop(0)], [drop(n, f"s3://bucket/landing/{n:040d}") for n in range(40)], None)
    note = note_markdown(summary, {"Model version": "/eksml/models/v1/"}, result.lines())
    assert len(note) <= NOTE_LIMIT
    assert (
        note.startswith("**PROMOTED** [v1](/eksml/models/v1/) test accuracy 0.8000")
        and "more drops: see the validate_params log" in note
    )
