"""Promotion is a compare-and-swap on a local store: racing writers and readers."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from promotion_race import RaceResult, race_trial  # noqa: E402


def test_racing_promotions_on_a_local_store(tmp_path):
    result = RaceResult()
    for trial in range(4):
        race_trial((tmp_path / f"t{trial}").as_uri(), writers=6, readers=3, result=result)
    assert result.errors == []
    assert (result.wrong_champion, result.lost_entries, result.wrong_previous, result.failed_reads) == (0, 0, 0, 0)
    assert result.promotions >= result.trials  # the best candidate won every trial, at least
