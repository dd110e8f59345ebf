"""What the main command prints after each DAG run: did it succeed, where did the model go,
how accurate is it, and what does the served model answer.

``python -m eksml.report training|serving``; exits non-zero when the latest run failed.
"""

from __future__ import annotations

import argparse
import sys

from eksml.layout import PLOTS, recorded_accuracy
from eksml.registry import ModelRegistry
from eksml.settings import resolve_settings
from eksml.storage import store_path

DAGS = {"training": "fashion_mnist_training", "serving": "model_deployment"}


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
    parser.add_argument("section", choices=sorted(DAGS))
    args = parser.parse_args(argv)
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
