"""The ``eks_cluster`` DAG and the training DAG mean the same cluster.

Its params default to null ("from the settings"): before, their defaults (``eksml``,
``us-west-2``, shared layout) silently replaced ``EKSML_CLUSTER_NAME`` / ``EKSML_REGION`` /
``EKSML_DEDICATED_TRAINING_CLUSTER``, so the lifecycle DAG could create one cluster and the
training DAG look for another. A value given at trigger time still overrides.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jinja2
import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import DagBag

    found = {}
    for name in ("eks_cluster.py", "fashion_mnist_training.py"):
        bag = DagBag(dag_folder=str(DAGS / name))
        assert not bag.import_errors, bag.import_errors
        found.update(bag.dags)
    return found


@pytest.fixture
def team_settings(monkeypatch):
    monkeypatch.setenv("EKSML_PROFILE", "aws")
    monkeypatch.setenv("EKSML_CLUSTER_NAME", "team-a")
    monkeypatch.setenv("EKSML_REGION", "eu-west-1")
    monkeypatch.setenv("EKSML_DEDICATED_TRAINING_CLUSTER", "true")


def _default_params(dag) -> dict:
    return {key: dag.params[key] for key in dag.params}


def _rendered(task, params: dict):
    """The task with its ``cluster`` and ``cluster_role`` rendered for a run with ``params``."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    task = copy.copy(task)
    task.cluster = {k: env.from_string(str(v)).render(params=params) for k, v in task.cluster.items()}
    task.cluster_role = env.from_string(task.cluster_role).render(params=params, **task.dag.user_defined_macros)
    return task


def test_both_dags_resolve_the_settings_cluster(dags, team_settings):
    from eksml.cluster.request import training_cluster_name

    lifecycle, training = dags["eks_cluster"], dags["fashion_mnist_training"]
    params = _default_params(lifecycle)
    apply = _rendered(lifecycle.get_task("apply_cluster"), params)
    made = apply._request({"run_id": "manual__1"})
    create = copy.copy(training.get_task("create_cluster"))
    create.cluster_mode = "existing"
    used = create._request({"run_id": "manual__2"})
    assert (made.name, made.region, made.dedicated_training_cluster) == ("team-a", "eu-west-1", True)
    assert (used.name, used.region, used.dedicated_training_cluster) == (made.name, made.region, True)

    # the add-ons and the GPU check of the lifecycle DAG go to the cluster that trains
    for task_id in ("prepare_training", "check_gpu_capacity"):
        task = _rendered(lifecycle.get_task(task_id), params)
        settings, req = task._settings_and_request()
        assert task._target_name(req) == training_cluster_name(made) == "team-a-training"
        assert task._target(settings, req).region == "eu-west-1"
    assert lifecycle.get_task("dedicated").python_callable(params=params) is True


def test_the_shared_layout_prepares_the_one_cluster(dags, monkeypatch):
    monkeypatch.setenv("EKSML_CLUSTER_NAME", "team-b")
    lifecycle = dags["eks_cluster"]
    params = _default_params(lifecycle)
    task = _rendered(lifecycle.get_task("prepare_training"), params)
    settings, req = task._settings_and_request()
    assert task._target_name(req) == "team-b" and task.cluster_role == "all"
    assert lifecycle.get_task("dedicated").python_callable(params=params) is False


def test_a_value_given_at_trigger_time_overrides_the_settings(dags, team_settings):
    lifecycle = dags["eks_cluster"]
    params = {
        **_default_params(lifecycle),
        "cluster_name": "other",
        "region": "us-east-2",
        "dedicated_training_cluster": False,
    }
    req = _rendered(lifecycle.get_task("apply_cluster"), params)._request({"run_id": "manual__3"})
    assert (req.name, req.region, req.dedicated_training_cluster) == ("other", "us-east-2", False)
    task = _rendered(lifecycle.get_task("check_gpu_capacity"), params)
    settings, req = task._settings_and_request()
    assert task._target_name(req) == "other" and task._target(settings, req).region == "us-east-2"
    assert lifecycle.get_task("dedicated").python_callable(params=params) is False


def test_the_trigger_form_accepts_an_empty_cluster(dags):
    """Null is a valid value for the three params (the form's "empty")."""
    lifecycle = dags["eks_cluster"]
    for key in ("cluster_name", "region", "dedicated_training_cluster"):
        assert lifecycle.params.get_param(key).resolve(None) is None
        assert lifecycle.params[key] is None
