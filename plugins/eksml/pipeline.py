"""The training DAG's Python steps, as plain functions of (params, settings, run facts).

The DAG file only wires these into tasks; keeping them here makes each step importable
and testable without a scheduler.
"""

from __future__ import annotations

import logging
import subprocess
from datetime import datetime, timezone
from typing import Any

from eksml import __version__
from eksml.cluster.node_contract import EPHEMERAL_CLUSTER
from eksml.dataprep import (
    TEST_IMAGES,
    TRAIN_IMAGES,
    data_digest,
    read_manifest,
    read_source,
    store_data,
    validate_source,
)
from eksml.drops import DropAccount, account
from eksml.errors import PreflightError
from eksml.layout import candidate_accuracy
from eksml.params import TrainingParams, validate_training_params
from eksml.registry import ModelRegistry, RegistryError
from eksml.runs import evaluation_spec, plan_run
from eksml.settings import PROJECT_ROOT, Settings, resolve_settings
from eksml.storage import store_path, uri_of, version_at

log = logging.getLogger(__name__)


def run_facts(context: dict[str, Any]) -> dict[str, Any]:
    """Run id and data interval of the running task; manual runs without one use run_after."""
    dag_run = context["dag_run"]
    start = context.get("data_interval_start")
    end = context.get("data_interval_end")
    if start is None or end is None:
        end = getattr(dag_run, "run_after", None) or datetime.now(timezone.utc)
        start = end
    return {"run_id": dag_run.run_id, "dag_id": dag_run.dag_id, "interval_start": start, "interval_end": end}


#: Run types whose data interval selects their data (the drop current at the interval's end).
INTERVAL_RUN_TYPES = ("scheduled", "backfill")


def run_type_name(run_type: Any) -> str:
    """``scheduled``, ``backfill``, ``manual``, ... of a DagRun's run type (its enum or string)."""
    return str(run_type or "").lower().removeprefix("dagruntype.")


def source_data_uri(
    params: TrainingParams, settings: Settings, drops: DropAccount | None = None, snapshot_at: datetime | None = None
) -> str:
    """The data to train on: the param; else the drop the asset events' account trains; else,
    for a run with a data interval (``snapshot_at``, its end), the drop landed by then; else
    the configured source (it stands for the data before the first drop)."""
    if params.data_uri:
        return params.data_uri
    if drops and drops.trained:
        return drops.trained.uri or settings.source_data_uri
    if snapshot_at is not None:
        from eksml.assets import drop_current_at

        return drop_current_at(settings, snapshot_at) or settings.source_data_uri
    return settings.source_data_uri


#: Why a scheduled run trained nothing (the run's first task says it, and so does its note).
SCHEDULED_OFF = (
    "scheduled training is off: this scheduled run trains nothing. Unpausing creates the "
    "latest interval's scheduled run; set the setting scheduled_training to true "
    "(EKSML_SCHEDULED_TRAINING or the eksml_settings Variable) for weekly retraining"
)


def scheduled_run_refusal(run_type: str | None, settings: Settings) -> str | None:
    """The reason a run must not train, or None: only timetable runs need the opt-in.

    Manual, asset-triggered and backfill runs were asked for; the scheduled run the scheduler
    creates when a user unpauses the DAG (to trigger a quick run from the form) was not, and
    in the aws profile it would start a full GPU training.
    """
    if run_type_name(run_type) == "scheduled" and not settings.scheduled_training:
        return SCHEDULED_OFF
    return None


def skip_run(run: Any, reason: str, settings: Settings) -> None:
    """Skip the whole run from its first task; its note says why."""
    from airflow.sdk.exceptions import AirflowSkipException

    from eksml.run_notes import write_run_note

    try:
        write_run_note(run.dag_id, run.run_id, f"**SKIPPED** {reason}", settings.airflow_api_conn_id)
    except Exception as exc:  # the note is a convenience: the skip stands without it
        log.warning("could not write the run note: %s", exc)
    raise AirflowSkipException(reason)


def validate(
    raw_params: dict[str, Any], triggering_events: Any = None, run: Any = None, drops: DropAccount | None = None
) -> dict[str, Any]:
    """First task: params, settings and source data are checked before anything is spent.

    A scheduled run without the ``scheduled_training`` opt-in (``run`` is the DagRun) is
    skipped here, and with it the whole run, before any data is read; its note says why.
    ``drops`` is the account of the asset events (:mod:`eksml.drops`); without it the run's
    triggering events alone are accounted for. A run whose drops an earlier run already
    accounted for is skipped, its note naming that run.
    """
    settings = resolve_settings()
    refusal = scheduled_run_refusal(getattr(run, "run_type", None), settings)
    if refusal:
        skip_run(run, refusal, settings)
    if drops is None and triggering_events:
        from eksml.drops import Drop

        drops = account([Drop.of(e) for evs in triggering_events.values() for e in evs], [], None)
    for line in drops.lines() if drops else []:
        log.info("data drops: %s", line)
    if drops and drops.trained is None:
        skip_run(run, "no new data: " + "; ".join(drops.lines()), settings)
    params = validate_training_params(raw_params)
    if settings.profile == "aws" and params.trainer == "sagemaker":
        from eksml.sagemaker.request import check_role_arn

        check_role_arn(settings.sagemaker_role_arn)  # no data copied for a run SageMaker would refuse
    if settings.profile == "kubernetes":  # cluster and store first: the source may be in that store
        require_preflight(settings, params)
    snapshot_at = (
        getattr(run, "data_interval_end", None)
        if run_type_name(getattr(run, "run_type", None)) in INTERVAL_RUN_TYPES
        else None
    )
    source = source_data_uri(params, settings, drops, snapshot_at)
    if snapshot_at is not None and not params.data_uri:
        log.info("interval ending %s: trains on the data current then, %s", snapshot_at.isoformat(), source)
    folder = store_path(source, settings)
    described = validate_source(read_source(folder), read_manifest(folder))
    if settings.profile == "aws":
        require_preflight(settings, params)
    log.info(
        "params ok: %s; source data ok at %s (%s train / %s test images)",
        params.to_dict(),
        source,
        described[TRAIN_IMAGES]["count"],
        described[TEST_IMAGES]["count"],
    )
    validated = {"params": params.to_dict(), "source_uri": source, "profile": settings.profile}
    if drops and not params.data_uri:
        validated["drops"] = drops.to_dict()
    return validated


def require_preflight(settings: Settings, params: TrainingParams) -> None:
    """The profile's preflight, logged; its errors stop the run before anything is copied or started."""
    from eksml.preflight import run_preflight

    report = run_preflight(settings, params)
    log.info("preflight:\n%s", report.text())
    if report.errors:
        where = "AWS" if settings.profile == "aws" else "the cluster or the store"
        raise PreflightError(f"preflight found what {where} would reject:\n" + "\n".join(map(str, report.errors)))


def needs_cluster(validated: dict[str, Any] | None) -> bool:
    """Only Kubernetes training in the aws profile has an EKS cluster to check, make or prepare
    (the kubernetes profile's cluster exists and is the user's: its tasks go straight to it)."""
    return bool(validated) and validated["profile"] == "aws" and validated["params"]["trainer"] == "kubernetes"


def needs_cluster_teardown(validated: dict[str, Any] | None) -> bool:
    """An ephemeral cluster is deleted after the run, whatever became of training."""
    return needs_cluster(validated) and validated["params"]["cluster"] == EPHEMERAL_CLUSTER


def prepare(validated: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """Copy the validated source into the data store: a data version named by interval and content."""
    settings = resolve_settings()
    params = validate_training_params(validated["params"])
    source = store_path(validated["source_uri"], settings)
    blobs = read_source(source)
    described = validate_source(blobs, read_manifest(source))  # again: the source may have changed since
    plan = plan_run(
        params,
        settings,
        run_id=facts["run_id"],
        interval_start=facts["interval_start"],
        interval_end=facts["interval_end"],
        data_digest=data_digest(described),
        dag_id=facts["dag_id"],
    )
    result = store_data(source, blobs, described, store_path(plan["data_uri"], settings))
    plan["data_files"] = {name: {k: d[k] for k in ("sha256", "count", "bytes")} for name, d in described.items()}
    registry = ModelRegistry(store_path(settings.models_root, settings))
    champion = registry.champion()
    plan["champion"] = champion
    plan["params"] = params.to_dict()
    plan["source_uri"] = validated["source_uri"]
    plan["copied"] = result["copied"]
    plan["evaluations"] = [
        evaluation_spec(c, plan["data_uri"], champion and champion["uri"], params.limit_test).to_dict()
        for c in plan["candidates"].values()
    ]
    return plan


def choose_trainer_tasks(plan: dict[str, Any]) -> list[str]:
    """Task ids of the training tasks this run needs (the branch)."""
    trainer = plan["params"]["trainer"]
    prefix = "train_sagemaker_" if trainer == "sagemaker" else "train_"
    return [f"{prefix}{framework}" for framework in plan["candidates"]]


def code_version() -> str:
    """The git commit of the project when available, else the package version."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return f"{__version__}+g{sha}"
    except (OSError, subprocess.SubprocessError):
        return __version__


def data_files_read(
    planned: dict[str, dict[str, Any]], read: dict[str, str] | None, framework: str
) -> dict[str, dict[str, Any]]:
    """The data files as the registry records them: the SHA-256 of the bytes the trainer read
    (its metrics' ``data_sha256``), not the one preparation meant it to read; ``sha256_from``
    says which (``plan`` only for a trainer that recorded none)."""
    files = {}
    for name, entry in planned.items():
        digest = (read or {}).get(name)
        if digest and digest != entry.get("sha256"):
            log.warning(
                "%s: the trainer read %s with SHA-256 %s, prepared as %s", framework, name, digest, entry["sha256"]
            )
        files[name] = {**entry, "sha256": digest or entry.get("sha256"), "sha256_from": "trainer" if digest else "plan"}
    return files


def register(plan: dict[str, Any], facts: dict[str, Any]) -> list[dict[str, Any]]:
    """Register every candidate that finished training and evaluation."""
    settings = resolve_settings()
    registry = ModelRegistry(store_path(settings.models_root, settings))
    registered = []
    for framework, candidate in plan["candidates"].items():
        staging = version_at(candidate["staging_uri"], settings)
        if not staging.finished:
            log.warning("%s: no finished training output at %s; not registered", framework, staging.folder)
            continue
        if not staging.evaluated:
            raise RegistryError(f"{framework}: {staging.folder} was trained but never evaluated")
        metrics, evaluation = staging.metrics(), staging.evaluation()
        accuracy = candidate_accuracy(evaluation, metrics)
        if accuracy is None:
            raise RegistryError(f"{framework}: no test accuracy recorded at {staging.folder}")
        metadata = {
            "model": settings.model_name,
            "framework": framework,
            "run_id": facts["run_id"],
            "dag_id": facts["dag_id"],
            "data_interval": plan["interval"],
            "data_uri": plan["data_uri"],
            "data_files": data_files_read(plan.get("data_files") or {}, metrics.get("data_sha256"), framework),
            "source_uri": plan["source_uri"],
            "trainer": plan["params"]["trainer"],
            "params": plan["params"],
            "metrics": {
                k: metrics.get(k)
                for k in (
                    "test_accuracy",
                    "test_loss",
                    "per_class_accuracy",
                    "epochs",
                    "images_per_sec",
                    "wall_time_s",
                    "train_time_s",
                    "train_images",
                    "test_images",
                    "workers",
                )
            },
            "evaluation": evaluation,
            "code_version": code_version(),
        }
        uri = registry.register(candidate["version"], staging.folder, metadata)
        champion = evaluation.get("champion") or {}
        registered.append(
            {
                "version": candidate["version"],
                "uri": uri_of(uri),
                "framework": framework,
                "test_accuracy": accuracy,
                "champion_version": champion.get("version"),
                "champion_accuracy": champion.get("test_accuracy"),
            }
        )
    if not registered:
        raise RegistryError("no candidate finished training: nothing registered")
    return registered


def promote_best(registered: list[dict[str, Any]], margin: float) -> dict[str, Any] | None:
    """Promote the most accurate new version if it beats the champion; return the pointer or None."""
    settings = resolve_settings()
    registry = ModelRegistry(store_path(settings.models_root, settings))
    best = max(registered, key=lambda r: r["test_accuracy"])
    measured = {best["champion_version"]: best["champion_accuracy"]} if best.get("champion_version") else {}
    return registry.promote(
        best["version"],
        test_accuracy=best["test_accuracy"],
        margin=margin,
        measured=measured,
        reason=f"gate: test accuracy {best['test_accuracy']:.4f} (margin {margin})",
    )


def champion_event_extra(pointer: dict[str, Any]) -> dict[str, Any]:
    """The champion asset event's extra: a notice of the promotion, for people and other pipelines.

    What serves is decided by ``champion.json`` alone, which the deployment reads: the pointer
    is what the compare-and-swap guards, Airflow merges events that arrive while the deployment
    waits (one run may follow several promotions), and a rollback moves the pointer without an
    event. So the extra names the promotion (its history ``entry``) but no location to deploy.
    """
    keys = ("version", "entry", "test_accuracy", "framework", "previous", "run_id")
    return {key: pointer.get(key) for key in keys}
