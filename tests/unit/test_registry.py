"""Model registry on a local store: registration rules, the gate, an untorn champion pointer."""

from __future__ import annotations

import json
import threading

import pytest

from eksml.registry import ModelRegistry, RegistryError, should_promote
from eksml.settings import load_settings
from eksml.storage import store_path


@pytest.fixture
def registry(tmp_path):
    settings = load_settings({"store_uri": tmp_path.as_uri()})
    return ModelRegistry(store_path(settings.models_root, settings)), settings


def _staging(settings, name, accuracy=0.9):
    path = store_path(f"{settings.store_uri}/staging/{name}", settings)
    path.mkdir(parents=True, exist_ok=True)
    (path / "saved_model").mkdir(exist_ok=True)
    (path / "saved_model" / "saved_model.pb").write_bytes(b"model-" + name.encode())
    (path / "metrics.json").write_text(json.dumps({"test_accuracy": accuracy}))
    return path


def test_register_copies_everything_and_writes_metadata_last(registry):
    reg, settings = registry
    target = reg.register("v1", _staging(settings, "v1"), {"run_id": "r1", "framework": "tensorflow"})
    assert (target / "saved_model" / "saved_model.pb").read_bytes() == b"model-v1"
    meta = reg.metadata("v1")
    assert meta["run_id"] == "r1" and meta["version"] == "v1"
    assert sorted(meta["files"]) == ["metrics.json", "saved_model/saved_model.pb"]
    assert reg.versions() == ["v1"]


def test_unfinished_training_is_not_registered(registry):
    reg, settings = registry
    staging = _staging(settings, "v2")
    (staging / "metrics.json").unlink()
    with pytest.raises(RegistryError, match="no metrics.json"):
        reg.register("v2", staging, {"run_id": "r"})
    assert reg.versions() == []


def test_another_runs_version_is_never_overwritten(registry):
    reg, settings = registry
    reg.register("v1", _staging(settings, "v1"), {"run_id": "r1"})
    with pytest.raises(RegistryError, match="belongs to run 'r1'"):
        reg.register("v1", _staging(settings, "other"), {"run_id": "r2"})
    assert (reg.version_path("v1") / "saved_model" / "saved_model.pb").read_bytes() == b"model-v1"
    reg.register("v1", _staging(settings, "v1"), {"run_id": "r1"})  # the same run may redo it


def test_gate():
    assert should_promote(0.80, None)
    assert should_promote(0.91, 0.90) and should_promote(0.91, 0.90, margin=0.01)
    assert not should_promote(0.89, 0.90)
    assert not should_promote(0.905, 0.90, margin=0.01)


def test_equal_accuracy_retrain_does_not_replace_the_champion(registry):
    reg, settings = registry
    for version in ("v1", "v2"):
        reg.register(version, _staging(settings, version, 0.90), {"run_id": version})
    reg.promote("v1", test_accuracy=0.90, reason="first")
    assert reg.promote("v2", test_accuracy=0.90, reason="same accuracy") is None
    assert reg.champion()["version"] == "v1"


def test_better_candidate_promoted_worse_one_not(registry):
    reg, settings = registry
    for version, acc in (("v1", 0.90), ("v2", 0.92), ("v3", 0.85)):
        reg.register(version, _staging(settings, version, acc), {"run_id": version})
    assert reg.promote("v1", test_accuracy=0.90, reason="first")["version"] == "v1"
    assert reg.promote("v2", test_accuracy=0.92, reason="better")["previous"] == "v1"
    before = (reg.root / "champion.json").read_text()
    assert reg.promote("v3", test_accuracy=0.85, reason="worse") is None
    assert (reg.root / "champion.json").read_text() == before
    assert [h["version"] for h in reg.history()] == ["v1", "v2"]
    assert reg.promote("v1", test_accuracy=0.90, reason="rollback", force=True)["version"] == "v1"


def test_concurrent_promotions_leave_a_whole_pointer_and_the_best_wins(registry):
    reg, settings = registry
    accuracies = {f"v{i:02d}": 0.80 + i / 1000 for i in range(24)}
    for version, acc in accuracies.items():
        reg.register(version, _staging(settings, version, acc), {"run_id": version})
    errors = []

    def promote(version):
        try:
            reg.promote(version, test_accuracy=accuracies[version], reason="race")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=promote, args=(v,)) for v in accuracies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    pointer = json.loads((reg.root / "champion.json").read_text())  # parses: never torn
    assert pointer["version"] == "v23"
    assert not list(reg.root.glob(".champion.json.*.tmp"))
    history = reg.history()
    assert [(h["previous"], h["version"]) for h in history[1:]] == [
        (a["version"], b["version"]) for a, b in zip(history, history[1:], strict=False)
    ]


def test_champion_json_holds_no_store_uri_so_a_copied_store_points_at_itself(registry, tmp_path):
    import shutil

    reg, settings = registry
    reg.register("v1", _staging(settings, "v1"), {"run_id": "r1"})
    reg.promote("v1", test_accuracy=0.9, reason="first")
    assert str(tmp_path) not in (reg.root / "champion.json").read_text()
    shutil.copytree(tmp_path / "models", tmp_path / "restored" / "models")
    copied = load_settings({"store_uri": (tmp_path / "restored").as_uri()})
    restored = ModelRegistry(store_path(copied.models_root, copied))
    assert restored.champion()["uri"] == f"file://{tmp_path}/restored/models/fashion-mnist/v1"
    assert restored.metadata("v1")["uri"] == restored.champion()["uri"]


def test_a_dangling_champion_is_treated_as_absent_and_repaired(registry, caplog):
    import shutil

    reg, settings = registry
    for version, acc in (("v1", 0.80), ("v2", 0.90), ("v3", 0.70)):
        reg.register(version, _staging(settings, version, acc), {"run_id": version, "metrics": {"test_accuracy": acc}})
    reg.promote("v1", test_accuracy=0.80, reason="first")
    reg.promote("v2", test_accuracy=0.90, reason="better")
    shutil.rmtree(reg.version_path("v2").path)  # deleted by hand
    assert reg.champion() is None
    assert "not registered" in caplog.text
    report = reg.repair()
    assert report["dangling"] and report["action"] == "point at v1"
    assert reg.pointer()[0]["version"] == "v2"  # a dry run changes nothing
    # The next good candidate wins even though the dangling champion was "better".
    assert reg.promote("v3", test_accuracy=0.70, reason="next")["previous"] == "v2"
    shutil.rmtree(reg.version_path("v3").path)
    assert reg.repair(apply=True)["pointer"]["version"] == "v1"
    assert reg.champion()["version"] == "v1"


def test_gate_uses_the_champion_measured_on_the_same_test_data(registry):
    reg, settings = registry
    for version, acc in (("v1", 0.95), ("v2", 0.90)):
        reg.register(version, _staging(settings, version, acc), {"run_id": version})
    reg.promote("v1", test_accuracy=0.95, reason="recorded on an easy slice")
    # Re-scored on v2's test data, the champion only reaches 0.88: v2 is better there.
    assert reg.promote("v2", test_accuracy=0.90, reason="same data", measured={"v1": 0.88})["version"] == "v2"


def test_a_failed_registration_leaves_no_partial_version(registry, monkeypatch):
    from eksml import storage

    reg, settings = registry
    staging = _staging(settings, "v1")
    copies = []
    real_copy = type(staging).copy

    def copy_then_fail(self, target, *args, **kwargs):
        if copies:
            raise OSError("disk full")
        copies.append(target)
        return real_copy(self, target, *args, **kwargs)

    monkeypatch.setattr(type(staging), "copy", copy_then_fail)
    with pytest.raises(OSError, match="disk full"):
        reg.register("v1", staging, {"run_id": "r1"})
    assert copies and not reg.version_path("v1").exists()
    assert storage.remove_tree(reg.version_path("v1")) == 0


def test_a_failed_pointer_write_leaves_no_temp_file(registry, monkeypatch):
    import os

    reg, settings = registry
    reg.register("v1", _staging(settings, "v1"), {"run_id": "r1"})

    def fsync_fails(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fsync_fails)
    with pytest.raises(OSError, match="disk full"):
        reg.promote("v1", test_accuracy=0.9, reason="first")
    monkeypatch.undo()
    leftovers = [p.name for p in reg.root.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == [] and reg.champion() is None


def test_the_gate_refusal_names_the_margin(registry, caplog):
    reg, settings = registry
    for version, acc in (("v1", 0.90), ("v2", 0.905)):
        reg.register(version, _staging(settings, version, acc), {"run_id": version})
    reg.promote("v1", test_accuracy=0.90, reason="first")
    with caplog.at_level("INFO", logger="eksml.registry"):
        assert reg.promote("v2", test_accuracy=0.905, reason="small gain", margin=0.01) is None
    assert "gate refused v2: test accuracy 0.9050 vs champion v1 at 0.9" in caplog.text
    assert "margin 0.01" in caplog.text


CORRUPT_POINTERS = {
    "truncated": lambda good: good[: len(good) // 2],
    "invalid": lambda good: b"{version: v2,,}",
    "empty": lambda good: b"",
    "a JSON array": lambda good: b"[" + good + b"]",
    "no version key": lambda good: json.dumps({k: v for k, v in json.loads(good).items() if k != "version"}).encode(),
}


@pytest.fixture
def corrupt_store(tmp_path, monkeypatch, request):
    """v1 then v2 promoted, then champion.json damaged the way ``request.param`` names."""
    monkeypatch.setenv("EKSML_STORE_URI", (tmp_path / "store").as_uri())
    settings = load_settings()
    reg = ModelRegistry(store_path(settings.models_root, settings))
    for version, acc in (("v1", 0.80), ("v2", 0.90), ("v3", 0.95)):
        reg.register(version, _staging(settings, version, acc), {"run_id": version, "metrics": {"test_accuracy": acc}})
    reg.promote("v1", test_accuracy=0.80, reason="first")
    reg.promote("v2", test_accuracy=0.90, reason="better")
    pointer_file = reg.root / "champion.json"
    pointer_file.write_bytes(CORRUPT_POINTERS[request.param](pointer_file.read_bytes()))
    return reg, settings, pointer_file


@pytest.mark.parametrize("corrupt_store", list(CORRUPT_POINTERS), indirect=True)
def test_every_registry_command_reports_a_corrupt_pointer_in_one_line(corrupt_store, capsys):
    from eksml.registry import main

    _, _, pointer_file = corrupt_store
    for command in ("list", "champion", "history"):
        assert main([command]) == 2, command
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert err.startswith(f"error: file://{pointer_file.path}") and "repair --apply" in err
    assert main(["repair"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("champion pointer: corrupt (") and "rebuild from promotions/" in out and "(dry run)" in out


@pytest.mark.parametrize("corrupt_store", list(CORRUPT_POINTERS), indirect=True)
def test_repair_apply_rebuilds_a_corrupt_pointer_from_the_newest_valid_promotion(corrupt_store, capsys):
    from eksml.registry import main

    reg, settings, pointer_file = corrupt_store
    promotions = reg.root / "promotions"
    (promotions / "99990101T000000000000Z-v9-garbled.json").write_bytes(b'{"version": ')  # newer, unreadable
    (promotions / "99990101T000000000001Z-gone-xx.json").write_text(json.dumps({"version": "gone"}))  # not registered
    assert main(["repair", "--apply"]) == 0
    pointer = json.loads(pointer_file.read_text())
    assert pointer["version"] == "v2" and pointer["entry"].startswith("promotions/") and "-v2-" in pointer["entry"]
    assert [e["version"] for e in reg.history()] == ["v1", "v2"]  # the chain leads back again
    assert reg.champion()["version"] == "v2"
    # The gate works again: v3 beats v2 and is promoted through the ordinary compare-and-swap.
    assert reg.promote("v3", test_accuracy=0.95, reason="next")["previous"] == "v2"


@pytest.mark.parametrize("corrupt_store", ["truncated", "a JSON array"], indirect=True)
def test_a_task_that_meets_a_corrupt_pointer_fails_without_retry_naming_the_file(corrupt_store):
    from airflow.sdk.exceptions import AirflowFailException

    from eksml.registry import resolve_deployment

    _, settings, pointer_file = corrupt_store
    with pytest.raises(AirflowFailException, match=rf"^file://{pointer_file.path} .*repair --apply"):
        resolve_deployment(None, settings)
