"""Promotion is a compare-and-swap on S3 (moto server honouring If-None-Match / If-Match)."""

from __future__ import annotations

import json

import pytest
from promotion_race import RaceResult, _register, race_trial

from eksml.registry import ModelRegistry
from eksml.settings import load_settings
from eksml.storage import PreconditionFailed, put_if_absent, put_if_match, read_versioned, store_path

BUCKET = "eksml-race"


@pytest.fixture(scope="module")
def s3_store(moto_bucket):
    return f"s3://{moto_bucket(BUCKET)}"


def test_conditional_writes_are_honoured(s3_store):
    settings = load_settings({"store_uri": s3_store})
    path = store_path(f"{s3_store}/cas/pointer.json", settings)
    first = put_if_absent(path, b"one")
    with pytest.raises(PreconditionFailed):
        put_if_absent(path, b"two")
    second = put_if_match(path, b"two", first)
    with pytest.raises(PreconditionFailed):
        put_if_match(path, b"three", first)  # stale tag
    found = read_versioned(path)
    assert (found.body, found.etag) == (b"two", second)


def test_racing_promotions_on_s3(s3_store):
    result = RaceResult()
    for trial in range(5):
        race_trial(f"{s3_store}/t{trial}", writers=4, readers=2, result=result)
    assert result.errors == []
    assert (result.wrong_champion, result.lost_entries, result.wrong_previous, result.failed_reads) == (0, 0, 0, 0)


def test_crash_between_entry_and_pointer_loses_nothing(s3_store, monkeypatch):
    """The entry is written, the pointer write dies: the champion and history are unchanged, a retry wins."""
    import eksml.registry as registry_module

    store = f"{s3_store}/crash"
    settings = load_settings({"store_uri": store})
    registry = ModelRegistry(store_path(settings.models_root, settings))
    _register(registry, store, "v1", 0.5)
    _register(registry, store, "v2", 0.9)
    registry.promote("v1", test_accuracy=0.5, reason="first")

    def dies(*args, **kwargs):
        raise ConnectionError("worker killed")

    monkeypatch.setattr(registry_module, "put_if_match", dies)
    with pytest.raises(ConnectionError):
        registry.promote("v2", test_accuracy=0.9, reason="crashes")
    assert registry.champion()["version"] == "v1"
    assert [h["version"] for h in registry.history()] == ["v1"]
    monkeypatch.undo()
    assert registry.promote("v2", test_accuracy=0.9, reason="retry")["previous"] == "v1"
    assert registry.promote("v2", test_accuracy=0.9, reason="retry again")["reason"] == "retry"  # idempotent
    assert [(h["version"], h["previous"]) for h in registry.history()] == [("v1", None), ("v2", "v1")]
    pointer = json.loads(read_versioned(registry.root / "champion.json").body)
    assert "uri" not in pointer and pointer["entry"].startswith("promotions/")  # relative: no store URI inside
