"""The assets that connect the project's DAGs (and upstream pipelines) to each other, and the
contract of training-data events: what an upstream pipeline may put in ``extra``.

Anyone can post an asset event (an upstream DAG's ``outlets``, or
``POST /api/v2/assets/events`` from outside Airflow), and Airflow stores whatever ``extra``
it is given. The training run that follows therefore checks the extra before it touches
data: a malformed one fails the first task with a message naming the problem, before
anything is copied, trained or registered. Upstream DAGs check their own extra the same way
before emitting it, so they never announce data nobody can read: :func:`land_drop` is what
the example upstream DAG runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset

from eksml.errors import InvalidInput
from eksml.layout import STAMP, Area, area_root, data_uri_problem

if TYPE_CHECKING:
    from datetime import datetime

    from eksml.settings import Settings

#: Updated by upstream pipelines when new training data lands; starts a retraining run.
#: An event's ``extra`` may carry ``{"uri": "<folder or s3:// prefix with the IDX files>"}``.
TRAINING_DATA = Asset(name="fashion_mnist_training_data", uri="eksml://datasets/fashion-mnist/train")

#: Updated by the training DAG when a new champion is promoted; starts a deployment.
CHAMPION_MODEL = Asset(name="fashion_mnist_champion_model", uri="eksml://models/fashion-mnist/champion")


class DataEventError(InvalidInput):
    """A training-data asset event's ``extra`` is malformed; the message says how."""


def validate_data_event_extra(extra: Any) -> str | None:
    """The event's data location, or None when it names none (train on the configured source).

    Raises :class:`DataEventError` when ``extra`` is not an object, or its ``uri`` is not a
    non-empty string that is an absolute path, ``file:///...`` or ``s3://bucket/...``.
    Other keys are allowed (Airflow adds its own, e.g. ``from_rest_api``).
    """
    if extra is None:
        return None
    if not isinstance(extra, Mapping):
        raise DataEventError(f"training-data event extra must be a JSON object, got {type(extra).__name__}: {extra!r}")
    if "uri" not in extra:
        return None
    uri = extra["uri"]
    if not isinstance(uri, str):
        raise DataEventError(f"training-data event extra 'uri' must be a string, got {type(uri).__name__}: {uri!r}")
    problem = data_uri_problem(uri)
    if problem:
        raise DataEventError(f"training-data event extra 'uri' {problem}")
    return uri


def data_event_extra(uri: str, **facts: Any) -> dict[str, Any]:
    """The ``extra`` an upstream pipeline emits for a new drop at ``uri`` (checked here first)."""
    extra = {"uri": uri, **facts}
    validate_data_event_extra(extra)
    return extra


def landing_uri(settings: Settings, landed_at: datetime) -> str:
    """``<store>/landing/<timestamp>``: one prefix per drop, dated in UTC (naive: taken as UTC)."""
    from datetime import timezone

    utc = landed_at.astimezone(timezone.utc) if landed_at.tzinfo else landed_at
    return f"{area_root(settings.store_uri, Area.LANDING)}/{utc:{STAMP}}"


def land_drop(
    settings: Settings, landed_at: datetime, source_uri: str | None = None, train_images: int | None = None
) -> dict[str, Any]:
    """Copy the four IDX files from ``source_uri`` (default: the configured source) into a new
    landing prefix dated ``landed_at``, validated (gzip CRC, IDX header, counts) before they are
    copied, its training split cut to the first ``train_images`` items when given, and return
    the asset event ``extra`` that announces it."""
    from eksml.dataprep import TEST_IMAGES, TRAIN_IMAGES, prepare_data
    from eksml.storage import store_path

    source = source_uri or settings.source_data_uri
    target = landing_uri(settings, landed_at)
    result = prepare_data(store_path(source, settings), store_path(target, settings), train_images)
    files = result["files"]
    return data_event_extra(
        result["uri"],
        source=source,
        train_images=files[TRAIN_IMAGES]["count"],
        test_images=files[TEST_IMAGES]["count"],
    )


def drop_current_at(settings: Settings, moment: datetime) -> str | None:
    """The newest complete landed drop dated at or before ``moment`` (its uri), or None.

    Landing prefixes are named by their date (:func:`landing_uri`); a prefix without its
    manifest (still being copied) does not count. A scheduled or backfilled run trains on the
    drop current at its interval's end, so each interval of a backfill selects its data.
    """
    from datetime import datetime, timezone

    from eksml.dataprep import MANIFEST
    from eksml.storage import store_path, uri_of

    root = store_path(area_root(settings.store_uri, Area.LANDING), settings)
    if not root.exists():
        return None
    dated = []
    for folder in root.iterdir():
        try:
            landed = datetime.strptime(folder.name, STAMP).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
        if landed <= moment and (folder / MANIFEST).exists():
            dated.append((landed, folder))
    return uri_of(max(dated, key=lambda d: d[0])[1]) if dated else None
