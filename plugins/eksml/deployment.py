"""Which model version the deployment DAG serves: the champion, or a version named by hand."""

from __future__ import annotations

import logging
from typing import Any

from eksml.registry import ModelRegistry, RegistryError
from eksml.settings import Settings
from eksml.storage import store_path

log = logging.getLogger(__name__)


def resolve_deployment(version: str | None, settings: Settings) -> dict[str, Any]:
    """The pointer to deploy.

    With ``version`` (a manual rollback or pin) that registered version becomes the champion
    first, so later evaluation gates compare against what actually serves.
    """
    registry = ModelRegistry(store_path(settings.models_root, settings))
    if version:
        meta = registry.metadata(version)  # raises for an unknown version before anything moves
        accuracy = float((meta.get("metrics") or {}).get("test_accuracy") or 0.0)
        pointer = registry.promote(version, test_accuracy=accuracy, reason="manual redeploy", force=True)
        log.info("redeploying %s by request", version)
        return pointer
    champion = registry.champion()
    if champion is None:
        raise RegistryError(f"no champion under {settings.models_root}: train a model first")
    return champion
