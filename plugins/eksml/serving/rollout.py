"""Reading a Deployment rollout from API objects (plain dicts, as the API server sends them).

``rollout_status`` follows ``kubectl rollout status``; ``previous_template`` finds what
``kubectl rollout undo`` returns to: the pod template of the newest ReplicaSet revision
older than the current one, among the ReplicaSets the Deployment owns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
#: Label the Deployment controller adds to each ReplicaSet's template; not part of ours.
HASH_LABEL = "pod-template-hash"


@dataclass(frozen=True)
class RolloutStatus:
    done: bool
    failed: bool
    message: str


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


def rollout_status(deployment: dict[str, Any]) -> RolloutStatus:
    """Whether every replica runs the current template and is available, or the rollout failed."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation", 0)
    if status.get("observedGeneration", 0) < generation:
        return RolloutStatus(False, False, "waiting for the controller to observe the new spec")
    progressing = _condition(status, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return RolloutStatus(False, True, f"rollout exceeded its progress deadline: {progressing.get('message')}")
    wanted = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    total = status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < wanted:
        return RolloutStatus(False, False, f"{updated} of {wanted} replicas updated")
    if total > updated:
        return RolloutStatus(False, False, f"{total - updated} old replicas pending termination")
    if available < updated:
        return RolloutStatus(False, False, f"{available} of {updated} updated replicas available")
    return RolloutStatus(True, False, f"{available} of {wanted} replicas available on the new revision")


def revision(obj: dict[str, Any]) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION, 0))
    except ValueError:
        return 0


def previous_template(
    deployment: dict[str, Any], replicasets: list[dict[str, Any]]
) -> tuple[int, dict[str, Any]] | None:
    """(revision, pod template) to roll back to, or None when there is no older revision."""
    uid = (deployment.get("metadata") or {}).get("uid")
    current = revision(deployment)
    owned = [
        rs
        for rs in replicasets
        if any(
            ref.get("uid") == uid and ref.get("kind") == "Deployment"
            for ref in (rs.get("metadata") or {}).get("ownerReferences") or []
        )
    ]
    older = [rs for rs in owned if 0 < revision(rs) < current]
    if not older:
        return None
    chosen = max(older, key=revision)
    template = dict(chosen["spec"]["template"])
    metadata = dict(template.get("metadata") or {})
    metadata["labels"] = {k: v for k, v in (metadata.get("labels") or {}).items() if k != HASH_LABEL}
    template["metadata"] = metadata
    return revision(chosen), template
