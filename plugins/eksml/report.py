"""What the main command prints: while a DAG runs, and after each run (did it succeed, where did
the model go, how accurate is it, and what does the served model answer).

``airflow dags test ... 2>&1 | python -m eksml.report progress`` shows one line per task start
and end (with its duration), the per-epoch lines of training, the run's outcome and every
error, read from the log on stdin; the full log stays in the file ``make run`` tees to.
Everything else (task-runner chatter, returned values, TensorFlow's start-up noise) is left
out: a line shown there means something to the person waiting.

``python -m eksml.report training|serving`` reports the latest run; it exits non-zero when
that run failed.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime

from eksml.layout import PLOTS, recorded_accuracy
from eksml.local.runner import OWN_TIMESTAMP
from eksml.registry import ModelRegistry
from eksml.settings import resolve_settings
from eksml.storage import store_path

DAGS = {"training": "fashion_mnist_training", "serving": "model_deployment"}

# --- while a DAG runs --------------------------------------------------------------------------
#: ``2026-11-29T18:59:47.785557Z [info     ] message [logger] loc=file.py:87``
_RECORD = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z?\s+\[(?P<level>\w+)\s*\]\s+(?P<msg>.*)$")
_TRAILER = re.compile(r"\s+\[[\w.]+\](?:\s+\w+=\S+)*\s*$")
_START = re.compile(r"\[DAG TEST\] starting task_id=(?P<task>\S+) map_index=(?P<index>-?\d+)")
_END = re.compile(r"\[DAG TEST\] end task task_id=(?P<task>\S+) map_index=(?P<index>-?\d+)")
#: Messages worth a line of their own (matched on the message, the logger trailer removed).
_KEEP = re.compile(
    r"^(epoch \d+/\d+ |OUTCOME |  (Model version|Metrics|Plots|Per-class plot) "
    r"|registered \S+ \(|promoted \S+ to champion"
    r"|gate refused|scheduled training is off|deployed |smoke test|rolled back)"
)
_RUN_END = re.compile(r"Marking run <DagRun .*: (?P<run>\S+), state:.*> (?P<state>successful|failed)")
_NEVER = re.compile(r"Returned value was|Condition result is|EKSML_RESULT")


def _clock(stamp: str) -> datetime | None:
    try:
        return datetime.fromisoformat(stamp)
    except ValueError:
        return None


def condense(lines: Iterable[str]) -> Iterator[str]:
    """The lines a person waiting for the run should see, in order."""
    started: dict[tuple[str, str], datetime | None] = {}
    in_traceback = False
    for raw in lines:
        line = raw.rstrip("\n")
        record = _RECORD.match(line)
        if record is None:
            # Continuation lines: only a traceback's are shown (it follows an error record).
            if (
                line.startswith("Traceback")
                or in_traceback
                and line.startswith((" ", "\t"))
                or (in_traceback and re.match(r"^\w+(\.\w+)*(Error|Exception)\b", line))
            ):
                in_traceback = True
                yield line
            else:
                in_traceback = False
            continue
        in_traceback = False
        stamp, level = _clock(record["ts"]), record["level"].lower()
        message = OWN_TIMESTAMP.sub("", _TRAILER.sub("", record["msg"]), count=1)
        clock = f"{stamp:%H:%M:%S}" if stamp else "--:--:--"
        if match := _START.search(message):
            task = match["task"] + (f"[{match['index']}]" if match["index"] != "-1" else "")
            started[(match["task"], match["index"])] = stamp
            yield f"{clock}  {task}: started"
        elif match := _END.search(message):
            task = match["task"] + (f"[{match['index']}]" if match["index"] != "-1" else "")
            begun = started.pop((match["task"], match["index"]), None)
            took = f" in {(stamp - begun).total_seconds():.0f} s" if begun and stamp else ""
            yield f"{clock}  {task}: finished{took}"
        elif _NEVER.search(message):
            continue
        elif match := _RUN_END.search(message):
            yield f"{clock}  run {match['run']}: {match['state']}"
        elif level in ("error", "critical") or _KEEP.search(message):
            marker = "ERROR " if level in ("error", "critical") else ""
            yield f"{clock}    {marker}{message}"


# --- after a run -------------------------------------------------------------------------------


def latest_run_state(dag_id: str) -> tuple[str | None, list[str], str | None]:
    """State of the newest run of ``dag_id``, the ids of its failed tasks, and its run id."""
    from airflow.models import DagRun, TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).first()
        if run is None:
            return None, [], None
        failed = [
            ti.task_id
            for ti in session.query(TaskInstance).filter(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run.run_id,
                TaskInstance.state.in_(["failed", "upstream_failed"]),
            )
        ]
        return str(run.state), failed, run.run_id


def run_version(registry: ModelRegistry, run_id: str | None) -> dict | None:
    """Metadata of the version ``run_id`` registered (its most accurate, when it trained two).

    Versions sort by data interval, so two runs of one interval cannot be told apart by name.
    """
    mine = [m for m in (registry.metadata(v) for v in registry.versions()) if m.get("run_id") == run_id]
    return max(mine, key=lambda m: recorded_accuracy(m) or 0.0, default=None)


def report_training(run_id: str | None) -> None:
    settings = resolve_settings()
    registry = ModelRegistry(store_path(settings.models_root, settings))
    versions = registry.versions()
    latest = run_version(registry, run_id)
    if latest is None:
        raise SystemExit(f"run {run_id} registered no model version")
    metrics = latest.get("metrics", {})
    print(f"model version : {latest['version']} ({latest['framework']}, trainer {latest.get('trainer')})")
    print(f"stored at     : {latest['uri']}")
    print(f"test accuracy : {metrics.get('test_accuracy'):.4f} on {metrics.get('test_images')} test images")
    print(
        f"training      : {metrics.get('images_per_sec'):.0f} images/s, {metrics.get('wall_time_s'):.0f} s, "
        f"{metrics.get('epochs')} epochs on {metrics.get('train_images')} images"
    )
    champion = registry.champion()
    if champion:
        print(f"champion      : {champion['version']} (accuracy {champion['test_accuracy']:.4f})")
    print(
        f"versions      : {len(versions)} registered under {settings.models_root}"
        f" (list them: PYTHONPATH=plugins .venv/bin/python -m eksml.registry list)"
    )
    print_plots(latest)


def print_plots(metadata: dict) -> None:
    """The plots the evaluation wrote next to the version (paths a file browser opens)."""
    files = set(metadata.get("files") or [])
    shown = [name for name in PLOTS if name in files or not files]
    base = metadata["uri"].rstrip("/")
    for label, name in zip(("plots", "", ""), shown, strict=False):
        path = f"{base}/{name}".removeprefix("file://")
        print(f"{label:<14}: {path}")


def report_serving(count: int = 8) -> None:
    """Ask the served model about real test images through its V1 REST API."""
    from eksml.serving.local import LocalServing
    from eksml.serving.smoke import http_transport, load_test_images

    settings = resolve_settings()
    server = LocalServing(settings).current()
    if server is None:
        raise SystemExit("no local inference server is running")
    images, labels = load_test_images(settings.source_data_uri, count, settings)
    path = f"/v1/models/{settings.model_name}:predict"
    status, body = http_transport(server.url)("POST", path, {"instances": images})
    if status != 200:
        raise SystemExit(f"POST {server.url}{path} answered {status}: {body}")
    print(f"serving       : {body.get('model_version', server.version)} at {server.url} (pid {server.pid})")
    print(f'V1 predict    : POST {server.url}{path}  {{"instances": [<28x28 pixels 0-255>, ...]}}')
    print(f"V2 infer      : POST {server.url}/v2/models/{settings.model_name}/infer")
    hits = 0
    for i, (label, prediction) in enumerate(zip(labels, body["predictions"], strict=True)):
        hit = prediction["class"] == label
        hits += hit
        print(
            f"  test image {i}: predicted {prediction['label']:<12} p={max(prediction['probabilities']):.2f}"
            f"  {'correct' if hit else 'wrong (class ' + str(label) + ')'}"
        )
    print(f"  {hits}/{len(labels)} correct")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("section", choices=[*sorted(DAGS), "progress"])
    args = parser.parse_args(argv)
    if args.section == "progress":
        for line in condense(sys.stdin):
            print(line, flush=True)
        return 0
    state, failed, run_id = latest_run_state(DAGS[args.section])
    if state != "success":
        print(
            f"{DAGS[args.section]}: latest run {state or 'missing'}; failed tasks: {', '.join(failed) or '-'}",
            file=sys.stderr,
        )
        return 1
    report_training(run_id) if args.section == "training" else report_serving()
    return 0


if __name__ == "__main__":
    sys.exit(main())
