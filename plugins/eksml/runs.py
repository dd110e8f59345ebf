"""Where one DAG run reads and writes: data prefix, model versions, checkpoints.

Every location is derived from the run's data interval and run id, so a run is
reproducible, a cleared and re-run run rewrites only its own outputs, and the N runs of a
backfill yield N versions that never overwrite one another.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eksml.cluster.node_contract import INFERENCE_ROLE
from eksml.layout import STAMP, Area, area_uri
from eksml.params import TrainingParams
from eksml.settings import Settings
from eksml.specs import Resources, WorkloadSpec, training_spec


def interval_key(start: datetime, end: datetime) -> str:
    """``20261122T000000-20261129T000000``: the data interval as a path segment."""
    return f"{start:{STAMP}}-{end:{STAMP}}"


def data_version(start: datetime, end: datetime, digest: str) -> str:
    """``<interval>-<content digest>``: a second drop for the same interval gets its own version."""
    return f"{interval_key(start, end)}-{digest}"


def model_version(end: datetime, framework: str, run_id: str) -> str:
    """Sortable by data interval, unique per run: ``20261129T000000-tensorflow-3f2a9c``."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:6]
    return f"{end:{STAMP}}-{framework}-{digest}"


@dataclass(frozen=True)
class Candidate:
    """One model a run trains: its version, where training writes, and its workload."""

    framework: str
    version: str
    staging_uri: str
    checkpoint_uri: str
    version_uri: str
    spec: WorkloadSpec

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: getattr(self, k) for k in ("framework", "version", "staging_uri", "checkpoint_uri", "version_uri")},
            "spec": self.spec.to_dict(),
        }


def plan_run(
    params: TrainingParams,
    settings: Settings,
    *,
    run_id: str,
    interval_start: datetime,
    interval_end: datetime,
    data_digest: str,
    dag_id: str = "fashion_mnist_training",
) -> dict[str, Any]:
    """Every location and workload of one training run, as an XCom-friendly dict.

    ``data_digest`` (:func:`eksml.dataprep.data_digest`) names the content of the data.
    """
    data_uri = f"{settings.data_root}/{data_version(interval_start, interval_end, data_digest)}"
    labels = {"eksml/dag-id": dag_id.replace("_", "-")[:63]}
    candidates = []
    for framework in params.frameworks:
        version = model_version(interval_end, framework, run_id)
        staging = area_uri(settings.store_uri, Area.STAGING, settings.model_name, version)
        checkpoint = area_uri(settings.store_uri, Area.CHECKPOINTS, settings.model_name, version)
        spec = training_spec(
            framework=framework,
            data_uri=data_uri,
            model_uri=staging,
            checkpoint_uri=checkpoint,
            epochs=params.epochs,
            batch_size=params.batch_size,
            learning_rate=params.learning_rate,
            gpus=params.gpus,
            workers=params.workers,
            limit_train=params.limit_train,
            limit_test=params.limit_test,
            run_labels=labels,
        )
        candidates.append(Candidate(framework, version, staging, checkpoint, f"{settings.models_root}/{version}", spec))
    return {
        "run_id": run_id,
        "interval": [interval_start.isoformat(), interval_end.isoformat()],
        "data_uri": data_uri,
        "candidates": {c.framework: c.to_dict() for c in candidates},
    }


def evaluation_spec(
    candidate: dict[str, Any], data_uri: str, champion_uri: str | None, limit_test: int | None
) -> WorkloadSpec:
    """Score one candidate (and the champion, on the same test data) in the inference image."""
    locations = {"candidate_uri": candidate["staging_uri"], "data_uri": data_uri, "out_uri": candidate["staging_uri"]}
    if champion_uri:
        locations["champion_uri"] = champion_uri
    return WorkloadSpec(
        name=f"evaluate-{candidate['framework']}",
        image="inference",
        script="evaluate.py",
        locations=locations,
        hyperparameters={"limit_test": int(limit_test)} if limit_test else {},
        env={"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"},
        resources=Resources(cpu="2", memory="4Gi", gpus=0),
        node_role=INFERENCE_ROLE,
    )
