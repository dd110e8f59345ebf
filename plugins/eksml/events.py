"""The contract of training-data asset events: what an upstream pipeline may put in ``extra``.

Anyone can post an asset event (an upstream DAG's ``outlets``, or
``POST /api/v2/assets/events`` from outside Airflow), and Airflow stores whatever ``extra``
it is given. The training run that follows therefore checks the extra before it touches
data: a malformed one fails the first task with a message naming the problem, before
anything is copied, trained or registered. Upstream DAGs check their own extra the same way
before emitting it, so they never announce data nobody can read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eksml.layout import data_uri_problem


class DataEventError(ValueError):
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
