"""A data interval selects its data: a scheduled or backfilled run trains on the drop that was
current at its interval's end, so a backfill over N intervals trains on N snapshots.

Real drops of the real Fashion-MNIST (growing subsets, as the landing DAG's ``train_images``
makes them) are landed in a ``file://`` store by the same function the landing DAG runs.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from slices import write_small_drop

from eksml.assets import drop_current_at, land_drop
from eksml.dataprep import DataValidationError
from eksml.pipeline import validate
from eksml.settings import resolve_settings

WEEK = timedelta(days=7)
FIRST_END = datetime(2026, 6, 1, 3, tzinfo=timezone.utc)  # a Monday 03:00, the schedule's interval end


@pytest.fixture
def series(tmp_path, monkeypatch, dataset_dir):
    """Three weekly drops, each dated a day before an interval's end: 600, 900, 1,200 images."""
    source = write_small_drop(dataset_dir, tmp_path / "source")
    monkeypatch.setenv("EKSML_PROFILE", "local")
    monkeypatch.setenv("EKSML_STORE_URI", (tmp_path / "store").as_uri())
    monkeypatch.setenv("EKSML_SOURCE_DATA_URI", str(source))
    settings = resolve_settings()
    drops = [
        land_drop(settings, FIRST_END + n * WEEK - timedelta(days=1), train_images=600 + 300 * n) for n in range(3)
    ]
    return SimpleNamespace(settings=settings, drops=drops, source=source)


def _interval_run(run_type: str, end: datetime) -> SimpleNamespace:
    return SimpleNamespace(
        run_type=run_type, dag_id="fashion_mnist_training", run_id=f"{run_type}__{end:%F}", data_interval_end=end
    )


def test_landed_drops_are_growing_subsets_of_the_training_split(series):
    assert [d["train_images"] for d in series.drops] == [600, 900, 1200]
    assert len({d["test_images"] for d in series.drops}) == 1
    assert len({d["uri"] for d in series.drops}) == 3


def test_each_interval_of_a_backfill_trains_on_the_drop_current_at_its_end(series):
    chosen = [
        validate({"epochs": 1}, None, _interval_run("backfill", FIRST_END + n * WEEK))["source_uri"] for n in range(3)
    ]
    assert chosen == [d["uri"] for d in series.drops]


def test_before_the_first_drop_the_configured_source_stands_and_manual_runs_are_unchanged(series):
    before = validate({"epochs": 1}, None, _interval_run("backfill", FIRST_END - WEEK))
    assert before["source_uri"] == str(series.source)
    assert validate({"epochs": 1}, None, _interval_run("manual", FIRST_END))["source_uri"] == str(series.source)


def test_a_drop_still_being_copied_is_not_current(series):
    """The manifest is written last: a prefix without it is not a snapshot yet."""
    from eksml.storage import store_path

    newest = store_path(series.drops[-1]["uri"], series.settings)
    (newest / "manifest.json").unlink()
    assert drop_current_at(series.settings, FIRST_END + 3 * WEEK) == series.drops[1]["uri"]


def test_a_subset_larger_than_the_source_is_refused(series):
    with pytest.raises(DataValidationError, match="2001 items asked for"):
        land_drop(series.settings, FIRST_END, train_images=2001)
