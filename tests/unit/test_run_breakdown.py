"""The time breakdown printed at the end of `make run` (eksml.breakdown): its arithmetic and parsing."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from eksml.breakdown import build_rows, format_rows, model_load_seconds, read_timings, training_seconds

T0 = 1_800_000_000.0


def _timings(tmp_path: Path) -> Path:
    path = tmp_path / "run-timings"
    path.write_text(
        f"setup {T0} {T0 + 2}\n"
        f"db-migrate {T0 + 2} {T0 + 3}\n"
        f"training-dag {T0 + 3} {T0 + 113}\n"
        "malformed line\n"
        f"report-training {T0 + 113} {T0 + 115}\n"
        f"deployment-dag {T0 + 115} {T0 + 135}\n"
    )
    return path


TASKS = {
    "fashion_mnist_training": [
        {"task_id": "validate_params", "start": T0 + 10, "end": T0 + 11},
        {"task_id": "prepare_data", "start": T0 + 11, "end": T0 + 12},
        {"task_id": "train_mxnet", "start": T0 + 12, "end": T0 + 12},  # skipped by the branch
        {"task_id": "train_tensorflow", "start": T0 + 12, "end": T0 + 102},
        {"task_id": "evaluate", "start": T0 + 102, "end": T0 + 106},
        {"task_id": "promote", "start": T0 + 106, "end": T0 + 106.5},
    ],
    "model_deployment": [
        {"task_id": "resolve_version", "start": T0 + 120, "end": T0 + 121},
        {"task_id": "deploy_and_smoke_test", "start": T0 + 121, "end": T0 + 131},
    ],
}


def test_training_and_model_load_are_split_out_of_their_tasks(tmp_path: Path) -> None:
    timings = read_timings(_timings(tmp_path))
    assert timings["training-dag"] == (T0 + 3, T0 + 113) and "malformed" not in timings
    built = build_rows(timings, TASKS, train_times={"train_tensorflow": 80.0}, model_load_s=6.0)
    assert [r.label for r in built].count("training (model.fit, all epochs)") == 1  # not the skipped branch
    rows = {r.label: r for r in built}
    assert rows["training (model.fit, all epochs)"].seconds == pytest.approx(80.0)
    assert rows["training (model.fit, all epochs)"].kind == "training"
    assert rows["training process: start-up, data, checkpoints, export"].seconds == pytest.approx(10.0)
    assert rows["training process: start-up, data, checkpoints, export"].kind == "training process"
    assert rows["deploy: model server start and model load"].seconds == pytest.approx(6.0)
    assert rows["deploy: model server start and model load"].kind == "model load"
    assert rows["deploy: smoke test, switch, stop old server"].seconds == pytest.approx(4.0)
    # The dags test process minus its tasks is Airflow's own start-up, parsing and scheduling.
    assert rows["training DAG: Airflow start-up, parsing, scheduling"].seconds == pytest.approx(110 - 96.5)
    assert rows["deployment DAG: Airflow start-up, parsing, scheduling"].seconds == pytest.approx(20 - 11)
    assert rows["training DAG: other tasks"].seconds == pytest.approx(0.5)
    assert rows["evaluation (reload, score, plots)"].seconds == pytest.approx(4.0)


def test_share_outside_training_and_model_load(tmp_path: Path) -> None:
    rows = build_rows(read_timings(_timings(tmp_path)), TASKS, train_times={"train_tensorflow": 80.0}, model_load_s=6.0)
    text = format_rows(rows, wall_s=135.0)
    # 135 s of wall time, 86 s of it model.fit and model load: 49 s outside; the training
    # process's other 10 s count as training in the second figure.
    assert text.splitlines()[-2:] == [
        "outside training (model.fit) and model load: 49.0 s of 135.0 s = 36.3 %",
        "outside training (the training process) and model load: 39.0 s of 135.0 s = 28.9 %",
    ]
    assert "set-up check (scripts/setup.sh)" in text and "airflow db migrate" in text


def test_without_training_figures_every_task_counts_as_orchestration(tmp_path: Path) -> None:
    rows = build_rows(read_timings(_timings(tmp_path)), TASKS, train_times={}, model_load_s=None)
    assert {r.kind for r in rows} == {"orchestration"}
    assert format_rows(rows, 135.0).endswith("= 100.0 %")


def test_model_load_is_read_from_the_server_log(tmp_path: Path) -> None:
    started = datetime(2026, 11, 29, 20, 0, 0, tzinfo=timezone.utc)
    local = started.astimezone().replace(tzinfo=None)
    log = tmp_path / "server.log"
    log.write_text(
        f"{local:%Y-%m-%d %H:%M:%S},100 INFO eksml_inference.backends downloaded saved_model of file:///m\n"
        f"{local:%Y-%m-%d %H:%M:%S},900 INFO eksml_inference.backends loaded tensorflow model file:///m from /c\n"
    )
    assert model_load_seconds(started.isoformat(), str(log)) == pytest.approx(0.9)
    assert model_load_seconds(started.isoformat(), str(tmp_path / "missing.log")) is None
    log.write_text("no load line\n")
    assert model_load_seconds(started.isoformat(), str(log)) is None


def test_training_seconds_are_this_runs_though_another_version_of_the_interval_sorts_last(tmp_path: Path) -> None:
    from eksml.registry import ModelRegistry
    from eksml.runs import model_version
    from eksml.settings import load_settings
    from eksml.storage import store_path

    settings = load_settings({"store_uri": tmp_path.as_uri()})
    registry = ModelRegistry(store_path(settings.models_root, settings))
    end = datetime(2026, 11, 23, tzinfo=timezone.utc)
    fits = {"manual__first": 140.9, "manual__second": 138.2}
    for run_id, fit in fits.items():
        version = model_version(end, "tensorflow", run_id)
        staging = tmp_path / "staging" / version
        staging.mkdir(parents=True)
        (staging / "metrics.json").write_text("{}")
        metadata = {"run_id": run_id, "framework": "tensorflow", "trainer": "kubernetes"}
        registry.register(
            version, store_path(staging.as_uri(), settings), {**metadata, "metrics": {"train_time_s": fit}}
        )
    newest_name = registry.metadata(registry.versions()[-1])["run_id"]
    other = next(r for r in fits if r != newest_name)
    # The breakdown used the newest name's figure whichever run it timed.
    assert training_seconds(registry, other) == {"train_tensorflow": fits[other]}
    assert training_seconds(registry, newest_name) == {"train_tensorflow": fits[newest_name]}
    assert training_seconds(registry, "manual__other") == {}
