"""Per-epoch checkpoints in the store, so a retried task resumes instead of restarting.

Layout: ``<checkpoint_uri>/epoch-0003/...`` plus ``<checkpoint_uri>/latest.json`` written
after the epoch's files, so a checkpoint that was cut off half-way is never resumed from.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from . import store


class CheckpointStore:
    def __init__(self, uri: str | None) -> None:
        self.uri = uri.rstrip("/") if uri else None

    def latest_epoch(self) -> int:
        """Last finished epoch (0 when there is none)."""
        if not self.uri or not store.exists(store.join(self.uri, "latest.json")):
            return 0
        return int(store.read_json(store.join(self.uri, "latest.json"))["epoch"])

    def save(self, epoch: int, local_dir: str | Path, history: list[dict] | None = None) -> None:
        if not self.uri:
            return
        store.upload_dir(local_dir, store.join(self.uri, f"epoch-{epoch:04d}"))
        store.write_json(store.join(self.uri, "latest.json"), {"epoch": epoch, "history": history or []})

    def history(self) -> list[dict]:
        if not self.uri or not store.exists(store.join(self.uri, "latest.json")):
            return []
        return list(store.read_json(store.join(self.uri, "latest.json")).get("history", []))

    def restore(self, epoch: int) -> Path:
        """Download checkpoint ``epoch`` into a fresh temporary folder and return it."""
        if not self.uri:
            raise ValueError("no checkpoint location (--checkpoint-uri) was given")
        target = Path(tempfile.mkdtemp(prefix=f"ckpt-{epoch:04d}-"))
        return store.download_dir(store.join(self.uri, f"epoch-{epoch:04d}"), target)
