"""Land a new Fashion-MNIST drop in the store, as an upstream data pipeline would.

The example upstream DAG calls :func:`land_drop`, then announces the drop with a
training-data asset event whose ``extra`` is :func:`eksml.events.data_event_extra`.
The files are validated (gzip CRC, IDX header, counts) before they are copied, so a bad
drop is never announced.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eksml.dataprep import prepare_data
from eksml.events import data_event_extra
from eksml.layout import STAMP, Area, area_root
from eksml.settings import Settings
from eksml.storage import store_path


def landing_uri(settings: Settings, landed_at: datetime) -> str:
    """``<store>/landing/<timestamp>``: one prefix per drop."""
    return f"{area_root(settings.store_uri, Area.LANDING)}/{landed_at:{STAMP}}"


def land_drop(settings: Settings, landed_at: datetime, source_uri: str | None = None) -> dict[str, Any]:
    """Copy the four IDX files from ``source_uri`` (default: the configured source) into a new
    landing prefix and return the asset event ``extra`` that announces it."""
    source = source_uri or settings.source_data_uri
    target = landing_uri(settings, landed_at)
    result = prepare_data(store_path(source, settings), store_path(target, settings))
    files = result["files"]
    return data_event_extra(
        result["uri"],
        source=source,
        train_images=files["train-images-idx3-ubyte.gz"]["count"],
        test_images=files["t10k-images-idx3-ubyte.gz"]["count"],
    )
