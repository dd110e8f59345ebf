"""model.tar.gz packed like SageMaker packs /opt/ml/model, unpacked into a staging folder safely."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from eksml.sagemaker.contract import ArtifactError, extract_model_archive, pack_model_dir, unpack_model_artifact


def model_dir(root: Path) -> Path:
    (root / "saved_model" / "variables").mkdir(parents=True)
    (root / "saved_model" / "saved_model.pb").write_bytes(b"\x08\x01graph")
    (root / "saved_model" / "variables" / "variables.index").write_bytes(b"idx")
    (root / "model.keras").write_bytes(b"PK\x03\x04keras")
    (root / "history.json").write_text(json.dumps([{"epoch": 1, "loss": 0.5}]))
    (root / "metrics.json").write_text(json.dumps({"test_accuracy": 0.8}))
    return root


def test_pack_then_unpack_into_staging_keeps_every_file(tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    src = model_dir(tmp_path / "model")
    archive = pack_model_dir(src, tmp_path / "out" / "model.tar.gz")
    with tarfile.open(archive) as tar:
        assert sorted(m.name for m in tar.getmembers() if m.isfile()) == [
            "history.json",
            "metrics.json",
            "model.keras",
            "saved_model/saved_model.pb",
            "saved_model/variables/variables.index",
        ]
    staging = tmp_path / "store" / "staging" / "v1"
    files = unpack_model_artifact(ObjectStoragePath(archive.as_uri()), ObjectStoragePath(staging.as_uri()))
    assert files[-1] == "metrics.json"
    assert sorted(files) == sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
    for rel in files:
        assert (staging / rel).read_bytes() == (src / rel).read_bytes()


def _archive(tmp_path: Path, add) -> Path:
    path = tmp_path / "bad.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        add(tar)
    return path


def _file(tar: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize(
    ("builder", "message"),
    [
        (lambda tar: _file(tar, "../escape.txt"), "points outside"),
        (lambda tar: _file(tar, "/etc/passwd"), "points outside"),
        (lambda tar: tar.addfile(_symlink("link", "/etc/passwd")), "not a plain file"),
        (lambda tar: _file(tar, "model.keras"), "holds no metrics.json"),
    ],
)
def test_unsafe_or_unfinished_archives_are_refused(tmp_path: Path, builder, message: str) -> None:
    with pytest.raises(ArtifactError, match=message):
        extract_model_archive(_archive(tmp_path, builder), tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


def test_dot_prefixed_members_are_accepted(tmp_path: Path) -> None:
    def add(tar):
        _file(tar, "./metrics.json", b"{}")
        _file(tar, "./saved_model/saved_model.pb", b"pb")

    out = extract_model_archive(_archive(tmp_path, add), tmp_path / "out")
    assert (out / "saved_model" / "saved_model.pb").read_bytes() == b"pb"


def test_not_a_gzip_is_an_artifact_error(tmp_path: Path) -> None:
    path = tmp_path / "model.tar.gz"
    path.write_bytes(b"not a tarball")
    with pytest.raises(ArtifactError, match="cannot unpack"):
        extract_model_archive(path, tmp_path / "out")


def test_missing_artifact_is_an_error(tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    with pytest.raises(ArtifactError, match="does not exist"):
        unpack_model_artifact(
            ObjectStoragePath((tmp_path / "none.tar.gz").as_uri()), ObjectStoragePath((tmp_path / "staging").as_uri())
        )
