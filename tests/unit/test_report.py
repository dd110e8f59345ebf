"""The summary the main command prints names the model the latest run produced."""

from __future__ import annotations

import json

from eksml.registry import ModelRegistry
from eksml.report import run_version
from eksml.runs import model_version
from eksml.settings import load_settings
from eksml.storage import store_path


def test_two_runs_of_one_interval_report_their_own_version(tmp_path):
    from datetime import datetime, timezone

    settings = load_settings({"store_uri": tmp_path.as_uri()})
    registry = ModelRegistry(store_path(settings.models_root, settings))
    end = datetime(2026, 11, 23, tzinfo=timezone.utc)
    runs = {"manual__first": 0.80, "manual__second": 0.85}
    versions = {}
    for run_id, accuracy in runs.items():
        version = versions[run_id] = model_version(end, "tensorflow", run_id)
        staging = tmp_path / "staging" / version
        staging.mkdir(parents=True)
        (staging / "metrics.json").write_text(json.dumps({"test_accuracy": accuracy}))
        registry.register(
            version, store_path(staging.as_uri(), settings), {"run_id": run_id, "metrics": {"test_accuracy": accuracy}}
        )
    assert registry.versions()[-1] != versions["manual__second"]  # what the summary used to print
    assert run_version(registry, "manual__second")["version"] == versions["manual__second"]
    assert run_version(registry, "manual__first")["metrics"]["test_accuracy"] == 0.80
    assert run_version(registry, "manual__other") is None
