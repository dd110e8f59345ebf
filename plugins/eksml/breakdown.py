"""Where the wall time of the main command goes: what is training and the deployment's model load,
and what is orchestration around them (set-up checks, Airflow start-up and DAG parsing, data
preparation, evaluation, registry copies, the smoke test...).

``scripts/run_local.sh`` appends one line ``<phase> <start> <end>`` (epoch seconds) per step to a
timings file; the tasks' own spans come from the Airflow metadata database, training seconds
from the registered model's metrics.json and the model load from the model server's log.

``python -m eksml.breakdown <timings file>`` prints the table.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

#: Phases run_local.sh and eksml.main_job time, in order -> label in the table.
PHASES = {
    "setup": "set-up check (scripts/setup.sh)",
    "db-migrate": "airflow db migrate",
    "settings": "airflow pools, variables, connections",
    "training-dag": "training DAG",
    "report-training": "training report",
    "deployment-dag": "deployment DAG",
    "report-serving": "serving report",
}
#: What each `dags test` phase runs; its wall time minus the tasks' is Airflow's own (the first
#: phase includes the process's start-up, which the second reuses).
DAG_PHASES = {"training-dag": "fashion_mnist_training", "deployment-dag": "model_deployment"}
TASK_LABELS = {
    # The first task of a `dags test` process: its span includes Airflow starting the in-process
    # execution API (about 4.5 s on 2 cores), which the checks themselves do not take.
    "validate_params": "validate params and data, with Airflow's execution API start",
    "prepare_data": "data preparation (copy, checksums)",
    "evaluate": "evaluation (reload, score, plots)",
    "register": "registry copies",
    "deploy_and_smoke_test": "deploy: smoke test, switch, stop old server",
}
TRAINING_TASKS = ("train_tensorflow", "train_mxnet", "train_sagemaker_tensorflow", "train_sagemaker_mxnet")
#: The model server's log line once the model is loaded (eksml_inference.backends.load_backend).
_LOADED = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*\bloaded \S+ model ")


@dataclass(frozen=True)
class Row:
    label: str
    seconds: float
    kind: str  # "training", "training process", "model load" or "orchestration"


def record_timing(path: Path, phase: str, start: float, end: float) -> None:
    """Append one ``<phase> <start> <end>`` line (run_local.sh's ``timed`` writes the same)."""
    with path.open("a") as out:
        out.write(f"{phase} {start:.6f} {end:.6f}\n")


def read_timings(path: Path) -> dict[str, tuple[float, float]]:
    """phase -> (start, end) epoch seconds, from run_local.sh's and eksml.main_job's timings file."""
    spans = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            spans[parts[0]] = (float(parts[1]), float(parts[2]))
    return spans


def task_spans(dag_id: str) -> tuple[str | None, list[dict[str, Any]]]:
    """The run id of ``dag_id``'s newest run, and the task id, start and end (epoch seconds) of
    each of its finished tasks."""
    from airflow.models import DagRun, TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).first()
        if run is None:
            return None, []
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id)
        return run.run_id, [
            {"task_id": ti.task_id, "start": ti.start_date.timestamp(), "end": ti.end_date.timestamp()}
            for ti in tis
            if ti.start_date and ti.end_date
        ]


def training_seconds(registry: Any, run_id: str | None) -> dict[str, float]:
    """Training task id -> ``model.fit`` seconds (metrics.json) of each version ``run_id`` registered.

    Versions of one data interval sort by a random suffix, so the newest name is not this run's.
    """
    seconds = {}
    for version in registry.versions():
        metadata = registry.metadata(version)
        if metadata.get("run_id") != run_id:
            continue
        metrics = metadata.get("metrics", {})
        fit = metrics.get("train_time_s")
        if fit is None and metrics.get("images_per_sec"):  # MXNet reports its speed only
            fit = metrics["epochs"] * metrics["train_images"] / metrics["images_per_sec"]
        if fit is not None:
            trainer = "sagemaker_" if metadata.get("trainer") == "sagemaker" else ""
            seconds[f"train_{trainer}{metadata['framework']}"] = fit
    return seconds


def model_load_seconds(started_at: str, log_path: str) -> float | None:
    """From the server process's start to its 'loaded ... model' log line (local-time stamps)."""
    try:
        lines = Path(log_path).read_text(errors="replace").splitlines()
    except OSError:
        return None
    start = datetime.fromisoformat(started_at).timestamp()
    for line in lines:
        match = _LOADED.match(line)
        if match:
            loaded = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if loaded >= start - 1:
                return loaded - start
    return None


def build_rows(
    timings: dict[str, tuple[float, float]],
    tasks: dict[str, list[dict[str, Any]]],
    train_times: dict[str, float],
    model_load_s: float | None,
) -> list[Row]:
    """The table: each timed phase, the DAG processes split into Airflow's own time and their tasks,
    the training task split into model.fit and the rest, the deploy task into model load and the rest."""
    rows: list[Row] = []
    for phase, label in PHASES.items():
        if phase not in timings:
            continue
        start, end = timings[phase]
        if phase not in DAG_PHASES:
            rows.append(Row(label, end - start, "orchestration"))
            continue
        spans = tasks.get(DAG_PHASES[phase], [])
        in_tasks = sum(t["end"] - t["start"] for t in spans)
        rows.append(Row(f"{label}: Airflow start-up, parsing, scheduling", end - start - in_tasks, "orchestration"))
        others = 0.0
        for task in spans:
            seconds = task["end"] - task["start"]
            if seconds < 0.05:  # skipped by a branch or short-circuit
                continue
            if task["task_id"] in TRAINING_TASKS and task["task_id"] in train_times:
                fit = train_times[task["task_id"]]
                rows.append(Row("training (model.fit, all epochs)", min(fit, seconds), "training"))
                rows.append(
                    Row(
                        "training process: start-up, data, checkpoints, export",
                        max(0.0, seconds - fit),
                        "training process",
                    )
                )
            elif task["task_id"] == "deploy_and_smoke_test" and model_load_s is not None:
                load = min(model_load_s, seconds)
                rows.append(Row("deploy: model server start and model load", load, "model load"))
                rows.append(Row(TASK_LABELS["deploy_and_smoke_test"], seconds - load, "orchestration"))
            elif task["task_id"] in TASK_LABELS:
                rows.append(Row(TASK_LABELS[task["task_id"]], seconds, "orchestration"))
            else:
                others += seconds
        if others:
            rows.append(Row(f"{label}: other tasks", others, "orchestration"))
    return rows


def format_rows(rows: list[Row], wall_s: float) -> str:
    """The breakdown as text, ending with the share of wall time outside training and model load,
    twice: with training as ``model.fit`` alone, and as the training workload's whole process (its
    start-up, data, checkpoints and export too), the way the model load counts the server's start."""
    lines = ["where the time went:"]
    for row in rows:
        lines.append(f"  {row.label:<62} {row.seconds:7.1f} s  {100 * row.seconds / wall_s:5.1f} %")
    fit_and_load = sum(r.seconds for r in rows if r.kind in ("training", "model load"))
    workloads = fit_and_load + sum(r.seconds for r in rows if r.kind == "training process")
    accounted = sum(r.seconds for r in rows)
    if wall_s - accounted > 0.05:
        lines.append(
            f"  {'(between the steps above)':<62} {wall_s - accounted:7.1f} s  "
            f"{100 * (wall_s - accounted) / wall_s:5.1f} %"
        )
    lines.append(f"  {'total':<62} {wall_s:7.1f} s")
    for training, useful in (("model.fit", fit_and_load), ("the training process", workloads)):
        outside = wall_s - useful
        lines.append(
            f"outside training ({training}) and model load: {outside:.1f} s of {wall_s:.1f} s = "
            f"{100 * outside / wall_s:.1f} %"
        )
    return "\n".join(lines)


def collect(timings_path: Path) -> tuple[list[Row], float]:
    """Gather every figure of the latest `make run` (run_local.sh's timings file, DB, store, server log)."""
    from eksml.registry import ModelRegistry
    from eksml.serving.local import LocalServing
    from eksml.settings import resolve_settings
    from eksml.storage import store_path

    timings = read_timings(timings_path)
    runs = {dag_id: task_spans(dag_id) for dag_id in DAG_PHASES.values()}
    tasks = {dag_id: spans for dag_id, (_, spans) in runs.items()}
    settings = resolve_settings()
    registry = ModelRegistry(store_path(settings.models_root, settings))
    train_times = training_seconds(registry, runs[DAG_PHASES["training-dag"]][0])
    server = LocalServing(settings).current()
    load_s = model_load_seconds(server.started_at, server.log_path) if server else None
    wall = max(e for _, e in timings.values()) - min(s for s, _ in timings.values())
    return build_rows(timings, tasks, train_times, load_s), wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("timings", type=Path, help="the timings file run_local.sh wrote")
    args = parser.parse_args(argv)
    rows, wall = collect(args.timings)
    print(format_rows(rows, wall))
    return 0


if __name__ == "__main__":
    sys.exit(main())
