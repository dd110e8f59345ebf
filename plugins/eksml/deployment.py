"""Which model version the deployment DAG serves: the champion, or a version named by hand."""

from __future__ import annotations

import logging
from typing import Any

from eksml.layout import recorded_accuracy
from eksml.registry import ModelRegistry, RegistryError
from eksml.settings import Settings
from eksml.storage import store_path

log = logging.getLogger(__name__)


def resolve_deployment(version: str | None, settings: Settings) -> dict[str, Any]:
    """The pointer to deploy: the champion, or the registered ``version`` asked for by hand.

    A requested version becomes champion only after it deployed and passed its smoke test
    (:func:`record_deployment`), so a broken one never displaces the champion that serves.
    """
    registry = ModelRegistry(store_path(settings.models_root, settings))
    if version:
        meta = registry.metadata(version)  # raises for an unknown version before anything moves
        accuracy = recorded_accuracy(meta) or 0.0
        log.info("deploying %s by request", version)
        return {"version": version, "uri": meta["uri"], "test_accuracy": accuracy, "requested": True}
    champion = registry.champion()
    if champion is None:
        raise RegistryError(f"no champion under {settings.models_root}: train a model first")
    return {**champion, "requested": False}


def record_deployment(pointer: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """After a successful deploy of a requested version, make it the champion (a rollback or pin),
    so later evaluation gates compare against what actually serves."""
    if not pointer.get("requested"):
        return pointer
    registry = ModelRegistry(store_path(settings.models_root, settings))
    return (
        registry.promote(
            pointer["version"], test_accuracy=pointer["test_accuracy"], force=True, reason="manual redeploy"
        )
        or pointer
    )
