"""The model registry: versions, their metadata, and the champion pointer, in the model store.

Layout under ``<store>/models/<model>/``::

    <version>/...             exported model, metrics.json, evaluation.json, plots
    <version>/metadata.json   written last: a version without it is not registered
    champion.json             the serving champion, replaced atomically
    promotions/<ts>-<v>.json  one object per promotion (append-only history)
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from eksml.storage import copy_tree, is_local, read_json, uri_of, write_json_atomic

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

METADATA = "metadata.json"
CHAMPION = "champion.json"


class RegistryError(RuntimeError):
    """A registration or promotion would break the registry's rules."""


def should_promote(candidate_accuracy: float, champion_accuracy: float | None, margin: float = 0.0) -> bool:
    """The evaluation gate: no champion yet, or at least as good plus the margin."""
    return champion_accuracy is None or candidate_accuracy >= champion_accuracy + margin


class ModelRegistry:
    """Registered versions of one model and its champion, on any object store."""

    def __init__(self, root: ObjectStoragePath) -> None:
        self.root = root

    # --- versions ----------------------------------------------------------------------
    def version_path(self, version: str) -> ObjectStoragePath:
        return self.root / version

    def is_registered(self, version: str) -> bool:
        return (self.version_path(version) / METADATA).exists()

    def versions(self) -> list[str]:
        """Registered versions, oldest data interval first."""
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and p.name not in ("promotions",) and (p / METADATA).exists())

    def metadata(self, version: str) -> dict[str, Any]:
        path = self.version_path(version) / METADATA
        if not path.exists():
            raise RegistryError(f"version {version!r} is not registered")
        return read_json(path)

    def register(self, version: str, staging: ObjectStoragePath, metadata: dict[str, Any]) -> ObjectStoragePath:
        """Copy a finished training output into ``<version>/`` and write its metadata last.

        Re-registering a version is allowed only from the run that created it (a cleared and
        re-run task); another run's version is never overwritten.
        """
        if not (staging / "metrics.json").exists():
            raise RegistryError(f"{staging} holds no metrics.json: training did not finish, nothing registered")
        target = self.version_path(version)
        if self.is_registered(version):
            owner = self.metadata(version).get("run_id")
            if owner != metadata.get("run_id"):
                raise RegistryError(f"version {version} belongs to run {owner!r}; refusing to overwrite it")
        copied = copy_tree(staging, target)
        write_json_atomic(target / METADATA, {**metadata, "version": version, "uri": uri_of(target),
                                              "files": copied,
                                              "registered_at": datetime.now(timezone.utc).isoformat()})
        log.info("registered %s (%d files) at %s", version, len(copied), target)
        return target

    # --- champion ------------------------------------------------------------------------
    def champion(self) -> dict[str, Any] | None:
        path = self.root / CHAMPION
        return read_json(path) if path.exists() else None

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise promotions on a local store; on S3 each pointer write is one atomic PUT."""
        if not is_local(self.root):
            yield
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with open(f"{self.root.path}/.champion.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def promote(self, version: str, *, test_accuracy: float, reason: str, margin: float = 0.0,
                force: bool = False, measured: dict[str, float] | None = None) -> dict[str, Any] | None:
        """Make ``version`` the champion if it passes the gate against the champion *now*.

        The check and the swap happen under one lock, so two concurrent promotions cannot
        both win against a stale champion. ``force`` (a manual rollback) skips the gate.
        ``measured`` maps versions to accuracies measured on the candidate's own test data
        (the evaluation step scores the champion there too); the champion's recorded
        accuracy is the fallback when it was not re-measured.
        Returns the new pointer, or None when the gate refused.
        """
        meta = self.metadata(version)
        with self._lock():
            current = self.champion()
            if current and current["version"] == version:
                return current
            current_acc = None
            if current:
                current_acc = (measured or {}).get(current["version"], current.get("test_accuracy"))
            if not force and not should_promote(test_accuracy, current_acc, margin):
                log.info("gate refused %s: %.4f vs champion %s at %s", version, test_accuracy,
                         current and current["version"], current_acc)
                return None
            now = datetime.now(timezone.utc)
            pointer = {"version": version, "uri": meta["uri"], "framework": meta.get("framework"),
                       "test_accuracy": test_accuracy, "promoted_at": now.isoformat(), "reason": reason,
                       "previous": current and current["version"], "run_id": meta.get("run_id")}
            write_json_atomic(self.root / CHAMPION, pointer)
            write_json_atomic(self.root / "promotions" / f"{now:%Y%m%dT%H%M%S%fZ}-{version}.json", pointer)
        log.info("promoted %s to champion (%s)", version, reason)
        return pointer

    def history(self) -> list[dict[str, Any]]:
        folder = self.root / "promotions"
        if not folder.exists():
            return []
        return [read_json(p) for p in sorted(folder.iterdir(), key=lambda p: p.name)]
