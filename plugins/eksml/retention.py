"""Retention of a run's scratch space: ``staging/`` and ``checkpoints/`` of finished runs.

Training writes its export to ``staging/<model>/<version>/`` and a checkpoint per epoch to
``checkpoints/<model>/<version>/``; once registered (copied into ``models/``) or abandoned,
neither is read again, and checkpoints alone weigh several times the model. A folder whose
newest object is older than ``retention_days`` belongs to a finished run (a running one
writes a checkpoint every epoch, and no task may run for days) and is deleted. Only these two
areas are ever listed or deleted: registered versions in ``models/`` are never touched.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from eksml.layout import Area, area_uri
from eksml.settings import Settings
from eksml.storage import remove_tree, store_path, uri_of

log = logging.getLogger(__name__)

#: The areas retention may delete from; ``models`` is deliberately absent.
SCRATCH_AREAS = (Area.STAGING, Area.CHECKPOINTS)


def _modified(info: dict[str, Any]) -> datetime | None:
    stamp = info.get("LastModified") or info.get("mtime") or info.get("created")
    if stamp is None:
        return None
    if isinstance(stamp, datetime):
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(float(stamp), tz=timezone.utc)


def newest_object(folder: Any) -> datetime | None:
    """When anything under ``folder`` was last written (None for an empty folder)."""
    found = folder.fs.find(folder.path, detail=True)
    stamps = [m for m in (_modified(info) for info in found.values()) if m is not None]
    return max(stamps, default=None)


def apply_retention(
    settings: Settings, *, keep_days: int | None = None, now: datetime | None = None, dry_run: bool = False
) -> dict[str, list[str]]:
    """Delete scratch folders untouched for ``keep_days`` (default ``settings.retention_days``).

    Returns ``{"deleted": [...], "kept": [...]}`` as URIs. ``keep_days`` of 0 disables retention.
    """
    keep_days = settings.retention_days if keep_days is None else keep_days
    result: dict[str, list[str]] = {"deleted": [], "kept": []}
    if keep_days <= 0:
        log.info("retention disabled (retention_days=%s)", keep_days)
        return result
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=keep_days)
    for area in SCRATCH_AREAS:
        root = store_path(area_uri(settings.store_uri, area, settings.model_name), settings)
        if not root.exists():
            continue
        for folder in sorted(root.iterdir(), key=lambda p: p.name):
            if not folder.is_dir():
                continue
            newest = newest_object(folder)
            if newest is not None and newest > cutoff:
                result["kept"].append(uri_of(folder))
                continue
            if not dry_run:
                files = remove_tree(folder)
                log.info("retention: deleted %s (%d files, last written %s)", uri_of(folder), files, newest)
            result["deleted"].append(uri_of(folder))
    return result
