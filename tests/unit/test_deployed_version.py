"""What the deployment serves has one source, ``champion.json``, and each version file is read once.

The champion asset event announces a promotion; the deployment resolves what to serve from the
pointer. ``resolve_version`` reads the version's ``metadata.json`` and hands the deployment what
it needs of it; the deployment operator reads ``metrics.json`` and ``evaluation.json`` once each.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from eksml import layout, registry
from eksml.pipeline import champion_event_extra
from eksml.registry import ModelRegistry, resolve_deployment
from eksml.serving.operators import DeployModelOperator
from eksml.settings import load_settings
from eksml.storage import store_path


@pytest.fixture
def store(tmp_path):
    """Two registered versions, ``v1`` champion then ``v2`` champion, on a local store."""
    settings = load_settings({"store_uri": tmp_path.as_uri()})
    models = ModelRegistry(store_path(settings.models_root, settings))
    for version, accuracy in (("v1", 0.90), ("v2", 0.92)):
        staging = store_path(f"{settings.store_uri}/staging/{version}", settings)
        staging.mkdir(parents=True, exist_ok=True)
        (staging / layout.METRICS).write_text(json.dumps({"test_accuracy": accuracy, "class_names": ["a", "b"]}))
        (staging / layout.EVALUATION).write_text(json.dumps({"candidate": {"test_accuracy": accuracy}}))
        models.register(version, staging, {"run_id": f"run-{version}", "data_uri": f"file:///data/{version}"})
        models.promote(version, test_accuracy=accuracy, reason="test")
    return settings, models


@pytest.fixture
def reads(monkeypatch):
    """File name -> how often a version file was read (registry metadata and ModelVersion alike)."""
    counted: Counter[str] = Counter()
    read_json, read = registry.read_json, layout.ModelVersion._read

    def counting_read_json(path):
        counted[path.name] += 1
        return read_json(path)

    def counting_read(self, name):
        counted[name] += 1
        return read(self, name)

    monkeypatch.setattr(registry, "read_json", counting_read_json)
    monkeypatch.setattr(layout.ModelVersion, "_read", counting_read)
    return counted


def test_the_champion_event_announces_a_promotion_without_a_second_pointer(store):
    settings, models = store
    pointer = models.champion()
    extra = champion_event_extra(pointer)
    assert extra["version"] == "v2" and extra["entry"] == pointer["entry"]
    assert "uri" not in extra  # where to deploy from is resolved from champion.json, in the deploying store


def test_the_deployment_serves_what_champion_json_names(store):
    settings, models = store
    assert resolve_deployment(None, settings)["version"] == models.champion()["version"] == "v2"


@pytest.mark.parametrize("requested", [None, "v1"])
def test_a_deployment_reads_each_version_file_once(store, reads, requested):
    settings, _ = store
    pointer = resolve_deployment(requested, settings)
    assert pointer["data_uri"] == f"file:///data/{pointer['version']}"
    operator = DeployModelOperator(
        task_id="deploy", model_uri=pointer["uri"], version=pointer["version"], data_uri=pointer["data_uri"]
    )
    operator.settings_overrides = {"store_uri": settings.store_uri}
    data_uri, expectations = operator._smoke_inputs(settings)
    assert data_uri == pointer["data_uri"]
    assert expectations["class_names"] == ["a", "b"]
    assert reads[layout.METADATA] == 1
    assert reads[layout.METRICS] == 1 and reads[layout.EVALUATION] == 1


def test_without_the_pointers_data_the_operator_reads_metadata_itself(store, reads):
    settings, models = store
    operator = DeployModelOperator(task_id="deploy", model_uri=models.metadata("v1")["uri"], version="v1")
    reads.clear()
    data_uri, _ = operator._smoke_inputs(settings)
    assert data_uri == "file:///data/v1" and reads[layout.METADATA] == 1
