"""``model.tar.gz`` in and out: the SageMaker artifact becomes the registry's staging layout.

SageMaker tars ``/opt/ml/model`` into ``<output>/<job>/output/model.tar.gz``. Unpacking it into
the spec's ``--model-uri`` leaves there exactly the files the Kubernetes branch writes, so
evaluation and registration cannot tell the branches apart. The local profile packs its
``model/`` folder into the same archive at the same place and goes through the same unpacking.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from eksml.layout import METRICS
from eksml.storage import copy_tree, is_local

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath


class ArtifactError(RuntimeError):
    """The model artifact is missing, unsafe to unpack, or not a finished training output."""


def pack_model_dir(model_dir: str | Path, archive: str | Path) -> Path:
    """Tar and gzip every file under ``model_dir`` with paths relative to it (as SageMaker does)."""
    root, archive = Path(model_dir), Path(archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=path.relative_to(root).as_posix(), recursive=False)
    return archive


def _safe_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = []
    for member in tar.getmembers():
        name = PurePosixPath(member.name)
        if name.is_absolute() or ".." in name.parts:
            raise ArtifactError(f"model archive member {member.name!r} points outside the model folder")
        if not (member.isfile() or member.isdir()):
            raise ArtifactError(f"model archive member {member.name!r} is not a plain file or folder")
        if str(name) in ("", "."):
            continue
        members.append(member)
    return members


def extract_model_archive(archive: str | Path, dest: str | Path) -> Path:
    """Unpack ``archive`` into ``dest`` after checking every member; return ``dest``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(dest, members=_safe_members(tar), filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArtifactError(f"cannot unpack model archive {archive}: {exc}") from exc
    if not (dest / METRICS).is_file():
        raise ArtifactError(f"model archive {archive} holds no {METRICS}: training did not finish")
    return dest


def unpack_model_artifact(artifact: ObjectStoragePath, staging: ObjectStoragePath) -> list[str]:
    """Fetch ``model.tar.gz`` from ``artifact``, unpack it into ``staging``; return the files written.

    ``metrics.json`` is copied last, so a reader never sees it beside a half-copied model.
    """
    from airflow.sdk import ObjectStoragePath

    if not artifact.exists():
        raise ArtifactError(f"model artifact {artifact} does not exist")
    with tempfile.TemporaryDirectory(prefix="sm-artifact-") as tmp:
        archive = Path(tmp) / "model.tar.gz"
        with artifact.open("rb") as src, open(archive, "wb") as dst:
            shutil.copyfileobj(src, dst, length=8 << 20)
        unpacked = extract_model_archive(archive, Path(tmp) / "model")
        if is_local(staging):
            staging.mkdir(parents=True, exist_ok=True)
        return copy_tree(ObjectStoragePath(unpacked.as_uri()), staging, last=(METRICS,))
