"""Retention deletes staging/ and checkpoints/ of finished runs after N days, never models/."""

from __future__ import annotations

import os
import time

import pytest

from eksml.retention import apply_retention
from eksml.settings import load_settings


def _files(root, rel, age_days=0.0):
    folder = root / rel
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.time() - age_days * 86400
    for name in ("a.bin", "epoch-0001/model.keras"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x" * 100)
        os.utime(folder / name, (stamp, stamp))
    return folder


def test_old_scratch_goes_recent_scratch_and_registered_versions_stay(tmp_path):
    settings = load_settings({"store_uri": tmp_path.as_uri(), "retention_days": 3})
    old_staging = _files(tmp_path, "staging/fashion-mnist/v-old", age_days=5)
    old_ckpt = _files(tmp_path, "checkpoints/fashion-mnist/v-old", age_days=5)
    new_ckpt = _files(tmp_path, "checkpoints/fashion-mnist/v-running", age_days=0.1)
    registered = _files(tmp_path, "models/fashion-mnist/v-old", age_days=30)
    (registered / "metadata.json").write_text("{}")
    other_model = _files(tmp_path, "staging/other-model/v-old", age_days=30)

    dry = apply_retention(settings, dry_run=True)
    assert sorted(dry["deleted"]) == sorted(f"file://{p}" for p in (old_staging, old_ckpt))
    assert old_staging.exists()

    result = apply_retention(settings)
    assert sorted(result["deleted"]) == sorted(dry["deleted"]) and result["kept"] == [f"file://{new_ckpt}"]
    assert not old_staging.exists() and not old_ckpt.exists() and new_ckpt.exists()
    assert sorted(p.name for p in registered.rglob("*") if p.is_file()) == ["a.bin", "metadata.json", "model.keras"]
    assert other_model.exists()  # another model's scratch is its own retention's business


def test_zero_days_keeps_everything(tmp_path):
    settings = load_settings({"store_uri": tmp_path.as_uri(), "retention_days": 0})
    old = _files(tmp_path, "staging/fashion-mnist/v-old", age_days=400)
    assert apply_retention(settings) == {"deleted": [], "kept": []} and old.exists()


@pytest.mark.parametrize("days", ["-1"])
def test_negative_retention_is_refused(monkeypatch, days):
    from eksml.settings import SettingsError

    monkeypatch.setenv("EKSML_RETENTION_DAYS", days)
    with pytest.raises(SettingsError, match="retention_days must be 0"):
        load_settings()
