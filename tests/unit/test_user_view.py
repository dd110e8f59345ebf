"""What a user meets first: unpausing does not start a surprise training, the graph reads in
groups with reasons for what a profile skips, the form says its limits, a local profile
cannot drive an EKS cluster, and the model server's state follows the store."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from project_files import load_dag

ROOT = Path(__file__).resolve().parents[2]
GROUPS = {"cluster", "training", "evaluation", "registry", "teardown"}


@pytest.fixture(scope="module")
def dag():
    return load_dag("fashion_mnist_training")


def _run(run_type: str) -> SimpleNamespace:
    return SimpleNamespace(run_type=run_type, dag_id="fashion_mnist_training", run_id=f"{run_type}__1")


# --- 1. unpausing -----------------------------------------------------------------------
def test_scheduled_run_trains_only_with_the_opt_in(monkeypatch, dataset_dir):
    from airflow.sdk.exceptions import AirflowSkipException

    from eksml.pipeline import validate

    monkeypatch.setenv("EKSML_SOURCE_DATA_URI", str(dataset_dir))
    with pytest.raises(AirflowSkipException, match="scheduled training is off"):
        validate({}, None, _run("scheduled"))
    for run_type in ("manual", "asset_triggered", "backfill"):
        assert validate({"epochs": 1}, None, _run(run_type))["params"]["epochs"] == 1
    monkeypatch.setenv("EKSML_SCHEDULED_TRAINING", "true")
    assert validate({}, None, _run("scheduled"))["params"]["learning_rate"] == 0.001


def test_unpausing_is_explained_where_the_user_meets_it(dag):
    assert not dag.catchup
    doc = dag.doc_md
    for needle in ("Unpausing", "scheduled_training", "Manual, asset-triggered and backfill runs always train"):
        assert needle in doc, needle
    readme = (ROOT / "README.md").read_text()
    assert "## The Airflow UI" in readme and "EKSML_SCHEDULED_TRAINING" in readme


# --- 6. the graph ---------------------------------------------------------------------
def test_tasks_are_grouped_by_stage(dag):
    outside = {t.task_id for t in dag.tasks if t.task_group is None or t.task_group.group_id is None}
    # outcome stands outside the groups: the collapsed grid shows each run's result.
    assert outside == {"validate_params", "prepare_data", "outcome"}
    groups = {t.task_id: t.task_group.group_id for t in dag.tasks if t.task_id not in outside}
    assert set(groups.values()) == GROUPS
    assert groups["create_cluster"] == "cluster" and groups["train_mxnet"] == "training"
    assert groups["evaluate"] == "evaluation" and groups["promote"] == "registry"
    # Task ids stay as they were: templates and links that name them keep working.
    assert "train_tensorflow" in dag.task_dict and "register" in dag.task_dict


def test_tasks_a_profile_skips_say_why(dag):
    for task_id in (
        "needs_cluster",
        "create_cluster",
        "prepare_cluster",
        "check_gpu_capacity",
        "delete_cluster",
        "needs_teardown",
    ):
        assert (
            "Skipped in the local profile" in dag.task_dict[task_id].doc_md
            or "skipped otherwise" in dag.task_dict[task_id].doc_md
        ), task_id
    for task_id in ("train_tensorflow", "train_mxnet"):
        assert "local profile: the same entrypoint runs as a process" in dag.task_dict[task_id].doc_md
    for task_id in ("train_sagemaker_tensorflow", "train_sagemaker_mxnet"):
        assert "Skipped unless `trainer=sagemaker`" in dag.task_dict[task_id].doc_md


def test_outcome_follows_the_gate_and_a_failure_fails_the_run(dag):
    outcome = dag.task_dict["outcome"]
    assert getattr(outcome.trigger_rule, "value", outcome.trigger_rule) == "none_failed"
    assert outcome.upstream_task_ids == {"publish_champion"}
    assert {t.task_id for t in dag.leaves} == {"outcome", "delete_cluster"}
    assert dag.task_dict["promote"].ignore_downstream_trigger_rules is False


# --- 7. the trigger form --------------------------------------------------------------
def test_every_param_has_a_section_and_numbers_state_their_limits():
    from eksml.params import PARAM_SCHEMAS, SECTIONS, airflow_params

    params = airflow_params()
    assert {schema["section"] for schema in PARAM_SCHEMAS.values()} == {None, *SECTIONS}
    assert PARAM_SCHEMAS["sagemaker_use_spot"]["section"].startswith("SageMaker")
    assert PARAM_SCHEMAS["cluster"]["section"].startswith("Cluster")
    assert PARAM_SCHEMAS["limit_train"]["section"] == PARAM_SCHEMAS["data_uri"]["section"] == "Data"
    # Training knobs: the default section (the one the form opens), so no section key at all.
    for name in ("framework", "epochs", "batch_size", "min_improvement"):
        assert "section" not in params[name].schema, name
    epochs = params["epochs"].description
    assert "Limits: 1 to 100. The form clamps" in epochs and "REST API refuses" in epochs
    assert "Limits: > 0 to 1." in params["learning_rate"].description
    assert "Limits" not in params["framework"].description


def test_readme_says_the_form_clamps_and_the_api_refuses():
    readme = (ROOT / "README.md").read_text()
    assert "clamps" in readme and "refused by the REST API" in readme


# --- 9. smaller points ----------------------------------------------------------------
def test_eks_cluster_dag_refuses_the_local_profile(monkeypatch):
    from eksml.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="needs the aws profile"):
        load_settings().require_aws("the eks_cluster DAG")
    monkeypatch.setenv("EKSML_PROFILE", "aws")
    load_settings().require_aws("the eks_cluster DAG")
    text = (ROOT / "dags" / "eks_cluster.py").read_text()
    assert 'require_aws("the eks_cluster DAG")' in text


def test_serving_state_follows_the_store(tmp_path, monkeypatch):
    from eksml.serving.local import LocalServing
    from eksml.settings import PROJECT_ROOT, load_settings

    monkeypatch.setenv("EKSML_STORE_URI", (tmp_path / "store").as_uri())
    assert LocalServing(load_settings()).state_dir == tmp_path / "serving"
    monkeypatch.setenv("EKSML_STORE_URI", "s3://bucket/ml")
    assert LocalServing(load_settings()).state_dir == PROJECT_ROOT / ".local" / "serving"
    monkeypatch.setenv("EKSML_SERVING_DIR", str(tmp_path / "elsewhere"))
    assert LocalServing(load_settings()).state_dir == tmp_path / "elsewhere"
    monkeypatch.delenv("EKSML_STORE_URI")
    monkeypatch.delenv("EKSML_SERVING_DIR")
    assert LocalServing(load_settings()).state_dir == PROJECT_ROOT / ".local" / "serving"


def test_workload_noise_goes_to_debug_and_lines_keep_one_timestamp(caplog):
    from eksml.local.runner import log_line

    log = logging.getLogger("test.workload")
    lines = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1795978768.532246   14155 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.",  # noqa: E501 (a log line as written)
        "E0000 00:00:1795978780.512022   14155 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
        "Failed call to cuInit: UNKNOWN ERROR (303)",
        "2026-11-29 18:59:47,785 INFO epoch 1/1 loss=0.8465 accuracy=0.7180",
        "2026-11-29 18:59:48,001 WARNING disk almost full",
    ]
    with caplog.at_level(logging.DEBUG, logger="test.workload"):
        for line in lines:
            log_line(log, line)
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert info == ["epoch 1/1 loss=0.8465 accuracy=0.7180", "WARNING disk almost full"]
    assert len([r for r in caplog.records if r.levelno == logging.DEBUG]) == 3


def test_registry_list_shows_versions_with_accuracy(tmp_path, monkeypatch, capsys):
    from eksml.registry import ModelRegistry, main
    from eksml.settings import load_settings
    from eksml.storage import store_path

    monkeypatch.setenv("EKSML_STORE_URI", (tmp_path / "store").as_uri())
    settings = load_settings()
    registry = ModelRegistry(store_path(settings.models_root, settings))
    for version, accuracy in (("20261012T030000-tensorflow-aaaaaa", 0.9012), ("20261019T030000-mxnet-bbbbbb", 0.8876)):
        staging = tmp_path / "staging" / version
        staging.mkdir(parents=True)
        (staging / "metrics.json").write_text("{}")
        registry.register(
            version,
            store_path(staging.as_uri(), settings),
            {
                "run_id": version,
                "framework": version.split("-")[1],
                "trainer": "kubernetes",
                "metrics": {"test_accuracy": accuracy},
            },
        )
    registry.promote("20261012T030000-tensorflow-aaaaaa", test_accuracy=0.9012, reason="test")
    assert main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if "T030000" in line]
    assert rows[0].split()[:3] == ["20261019T030000-mxnet-bbbbbb", "0.8876", "mxnet"]
    assert rows[1].split()[:4] == ["*", "20261012T030000-tensorflow-aaaaaa", "0.9012", "tensorflow"]
    assert any("roll back" in line and "model_deployment" in line for line in out)


def test_deployment_dag_says_how_to_roll_back():
    text = (ROOT / "dags" / "model_deployment.py").read_text()
    assert "python -m eksml.registry list" in text and "Rolling back" in text
    assert "unpause this one" in text


def test_make_run_summary_prints_the_plot_paths(capsys):
    from eksml.report import print_plots

    print_plots(
        {
            "uri": "file:///srv/store/models/fashion-mnist/v1",
            "files": ["metrics.json", "training_curves.png", "confusion_matrix.png", "per_class_accuracy.png"],
        }
    )
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "plots         : /srv/store/models/fashion-mnist/v1/training_curves.png",
        "              : /srv/store/models/fashion-mnist/v1/confusion_matrix.png",
        "              : /srv/store/models/fashion-mnist/v1/per_class_accuracy.png",
    ]
