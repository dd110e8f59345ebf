"""trainkit.store on local paths and file:// URIs (the s3:// side is in test_trainkit_store_s3.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainkit import store


def test_join_normalises_slashes() -> None:
    assert store.join("s3://bucket/prefix/", "/a/", "b.json") == "s3://bucket/prefix/a/b.json"
    assert store.join("/tmp/x", "y") == "/tmp/x/y"


@pytest.mark.parametrize("scheme", ["", "file://"])
def test_json_round_trip_creates_parents_and_leaves_no_partial_file(tmp_path: Path, scheme: str) -> None:
    uri = f"{scheme}{tmp_path}/deep/er/latest.json"
    store.write_json(uri, {"epoch": 3, "history": [{"loss": 0.5}]})
    store.write_json(uri, {"epoch": 4, "history": []})  # replaces
    assert store.read_json(uri) == {"epoch": 4, "history": []}
    assert [p.name for p in (tmp_path / "deep" / "er").iterdir()] == ["latest.json"]


def test_exists_and_remove(tmp_path: Path) -> None:
    uri = f"file://{tmp_path}/metrics.json"
    assert not store.exists(uri)
    assert store.remove(uri) is False
    store.write_json(uri, {})
    assert store.exists(uri)
    assert store.remove(uri) is True
    assert not (tmp_path / "metrics.json").exists()


def test_open_uri_for_writing_creates_parents(tmp_path: Path) -> None:
    with store.open_uri(str(tmp_path / "a" / "b.bin"), "wb") as handle:
        handle.write(b"\x00\x01")
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"\x00\x01"


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_upload_dir_copies_named_files_last(tmp_path: Path) -> None:
    src = tmp_path / "export"
    for rel, data in {
        "metrics.json": b"{}",
        "saved_model/saved_model.pb": b"pb",
        "saved_model/variables/variables.index": b"ix",
        "model.keras": b"k",
    }.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    written = store.upload_dir(src, f"file://{tmp_path}/model", last=("metrics.json",))
    assert written[-1] == "metrics.json"
    assert sorted(written) == sorted(_tree(src))
    assert _tree(tmp_path / "model") == _tree(src)


def test_download_dir_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.txt").write_text("b")
    store.upload_dir(src, str(tmp_path / "remote"))
    got = store.download_dir(str(tmp_path / "remote"), tmp_path / "back")
    assert got == tmp_path / "back"
    assert _tree(got) == _tree(src)
