"""The training DAG's graph keeps its promises whatever the profile: a failed run fails, an
ephemeral cluster is torn down after training whatever happened, and the cluster segment
is skipped where no cluster is used."""

from __future__ import annotations

from pathlib import Path

import pytest
from project_files import load_dag

from eksml.pipeline import choose_trainer_tasks, needs_cluster, needs_cluster_teardown

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dag():
    return load_dag("fashion_mnist_training")


def _validated(profile="aws", trainer="kubernetes", cluster="ephemeral"):
    return {"profile": profile, "params": {"trainer": trainer, "cluster": cluster}}


def test_cluster_decisions():
    assert needs_cluster(_validated()) and needs_cluster_teardown(_validated())
    assert needs_cluster(_validated(cluster="existing")) and not needs_cluster_teardown(_validated(cluster="existing"))
    assert not needs_cluster(_validated(profile="local")) and not needs_cluster_teardown(_validated(profile="local"))
    assert not needs_cluster(_validated(trainer="sagemaker"))
    assert not needs_cluster_teardown(None)  # validation failed: nothing was created


def test_branch_targets_exist(dag):
    for trainer in ("kubernetes", "sagemaker"):
        plan = {"params": {"trainer": trainer}, "candidates": {"tensorflow": {}, "mxnet": {}}}
        for task_id in choose_trainer_tasks(plan):
            assert task_id in dag.task_dict


def test_teardown_runs_after_every_training_outcome(dag):
    teardown = dag.task_dict["needs_teardown"]
    assert str(teardown.trigger_rule) in ("all_done", "TriggerRule.ALL_DONE")
    trainers = {t for t in dag.task_ids if t.startswith("train_")}
    assert trainers | {"evaluate", "check_gpu_capacity", "validate_params"} <= teardown.upstream_task_ids
    assert dag.task_dict["delete_cluster"].upstream_task_ids == {"needs_teardown"}


def test_failed_training_fails_the_run(dag):
    """The run's state follows its leaves: outcome (none_failed) depends on training through
    publish_champion and promote (skipped by a refusal, failed by a failure)."""
    leaves = {t.task_id for t in dag.leaves}
    assert "outcome" in leaves
    chain = ["outcome", "publish_champion", "promote", "register", "evaluate"]
    for child, parent in zip(chain, chain[1:], strict=False):
        assert parent in dag.task_dict[child].upstream_task_ids


def test_gpu_work_uses_the_gpu_pool(dag):
    for task_id in ("train_tensorflow", "train_mxnet", "train_sagemaker_tensorflow", "train_sagemaker_mxnet"):
        assert dag.task_dict[task_id].pool == "gpu"


def test_kubernetes_training_waits_in_the_triggerer(dag):
    """Training runs for hours: both Kubernetes training tasks defer, whatever Airflow's default."""
    for task_id in ("train_tensorflow", "train_mxnet"):
        assert dag.task_dict[task_id].deferrable is True


def test_every_training_operator_takes_the_planned_spec(dag):
    """Pod, MPIJob and SageMaker training all get ``spec=``: the same planned candidate's spec."""
    for framework, tasks in {
        "tensorflow": ("train_tensorflow", "train_sagemaker_tensorflow"),
        "mxnet": ("train_mxnet", "train_sagemaker_mxnet"),
    }.items():
        specs = {dag.get_task(task_id).spec for task_id in tasks}
        assert len(specs) == 1, specs
        assert f"['candidates']['{framework}']['spec']" in specs.pop()
