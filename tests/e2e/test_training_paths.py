"""The training DAG's other paths end to end in the local profile (``dag.test()``, real training
on slices of Fashion-MNIST): MXNet with Horovod, both frameworks side by side, and a run whose
training fails (the run fails, nothing is registered, the teardown branch still runs)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from dag_runs import registered_versions, task_states, training_dag

ROOT = Path(__file__).resolve().parents[2]
VENVS = ROOT / ".venvs"
SLICE = {"epochs": 1, "limit_train": 1000, "limit_test": 500, "workers": 2, "gpus": 0, "batch_size": 64}


def _need(*images: str) -> None:
    missing = [i for i in images if not (VENVS / i / "bin" / "python").exists()]
    if missing:
        pytest.skip(f"virtualenv(s) missing: {', '.join(missing)} (bash scripts/setup.sh)")


@pytest.mark.slow
def test_mxnet_with_horovod(store, dataset_dir):
    _need("mxnet-horovod", "inference")
    # Batch 16: ~30 steps per worker, enough for the dense head's batch-norm running statistics,
    # which the evaluation uses (8 steps of batch 64 leave them near their initial values).
    run = training_dag().test(run_conf={**SLICE, "framework": "mxnet", "batch_size": 16})
    states = task_states(run)
    assert str(run.state) == "success", states
    assert states["train_mxnet"] == "success" and states["train_tensorflow"] == "skipped"
    (meta,) = registered_versions(store).values()
    assert meta["framework"] == "mxnet" and meta["metrics"]["workers"] == 2
    assert meta["metrics"]["test_accuracy"] > 0.2  # one epoch on 1,000 images: well above 0.1 chance
    champion = json.loads((store / "models" / "fashion-mnist" / "champion.json").read_text())
    assert champion["version"] == meta["version"]


@pytest.mark.slow
def test_both_frameworks_side_by_side(store, dataset_dir):
    _need("mxnet-horovod", "tf-fashion-mnist", "inference")
    run = training_dag().test(run_conf={**SLICE, "framework": "both"})
    states = task_states(run)
    assert str(run.state) == "success", states
    assert states["train_mxnet"] == states["train_tensorflow"] == "success"
    assert states["evaluate[0]"] == states["evaluate[1]"] == "success"
    versions = registered_versions(store)
    assert sorted(m["framework"] for m in versions.values()) == ["mxnet", "tensorflow"]
    best = max(versions.values(), key=lambda m: m["metrics"]["test_accuracy"])
    champion = json.loads((store / "models" / "fashion-mnist" / "champion.json").read_text())
    assert champion["version"] == best["version"]


def test_a_training_failure_fails_the_run_and_the_teardown_branch_still_runs(store, tmp_path, monkeypatch, dataset_dir):
    """The TF entrypoint is replaced by one that refuses its input (exit 2): no retry, no version."""
    venvs = tmp_path / "venvs"
    python = venvs / "tf-fashion-mnist" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\necho 'error: this input can never train' >&2\nexit 2\n")
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    for image in ("inference", "mxnet-horovod"):
        if (VENVS / image).exists():
            os.symlink(os.path.realpath(VENVS / image), venvs / image)
    monkeypatch.setenv("EKSML_VENVS_DIR", str(venvs))
    run = training_dag().test(run_conf={**SLICE, "framework": "tensorflow"})
    states = task_states(run)
    assert str(run.state) == "failed", states
    assert states["train_tensorflow"] == "failed"
    assert states["register"] == "upstream_failed" and states["publish_champion"] == "upstream_failed"
    # the teardown branch ran (ALL_DONE); with no cluster in the local profile it deletes nothing
    assert states["needs_teardown"] == "success" and states["delete_cluster"] == "skipped"
    ti = next(t for t in run.get_task_instances() if t.task_id == "train_tensorflow")
    assert ti.try_number == 1  # "can never succeed" is not retried
    assert registered_versions(store) == {} and not (store / "models" / "fashion-mnist" / "champion.json").exists()


FAKE_EKSCTL = ROOT / "tests" / "fixtures" / "fake_eksctl"


@pytest.mark.slow
def test_aws_profile_training_failure_still_deletes_the_ephemeral_cluster(
    tmp_path, monkeypatch, airflow_db, moto_server, moto_bucket, small_drop
):
    """``dag.test()`` of the real DAG in the aws profile with ``cluster=ephemeral``: the stand-in
    eksctl (a subprocess answering from a state file) creates the run's cluster, the training pod
    fails, and Airflow's own trigger rules run ``needs_teardown`` (all_done) and ``delete_cluster``,
    which deletes that cluster through the stand-in; the run is failed.

    Data preparation is real (a small drop copied into the store on the moto server), so the
    training task renders its spec and fails at its first try, as a pod exiting 2 fails it.

    Stood in, so not proven here: ``validate`` (returns an aws/ephemeral decision without reading
    S3), cluster preparation and the GPU capacity check, the other trainers and the branch choice
    (marked success without running), and the pod itself (its operator raises what a container
    exiting 2 raises). Nothing here touches EKS, eksctl or a Kubernetes API."""
    import sys

    from airflow.sdk.exceptions import AirflowFailException

    import eksml.pipeline
    from eksml.cluster.lifecycle import ephemeral_cluster_name
    from eksml.kubernetes.operators import GpuTrainingPodOperator

    monkeypatch.setenv(
        "PATH", os.pathsep.join([str(Path(sys.executable).parent), str(FAKE_EKSCTL), os.environ["PATH"]])
    )
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("EKSML_PROFILE", "aws")
    monkeypatch.setenv("EKSML_STORE_URI", f"s3://{moto_bucket('ml-store-bucket')}/eksml")
    monkeypatch.delenv("EKSML_EKSCTL", raising=False)
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "AKIAIOSFODNN7EXAMPLE",
                "password": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "extra": {"region_name": "us-west-2", "endpoint_url": moto_server},
            }
        ),
    )
    monkeypatch.setattr(
        eksml.pipeline,
        "validate",
        lambda params, events, dag_run, drops=None: {
            "profile": "aws",
            "params": {**params, "trainer": "kubernetes", "cluster": "ephemeral"},
            "source_uri": str(small_drop),
        },
    )
    pods: list[str] = []

    def pod_exits_2(self, context):
        pods.append(self.task_id)
        raise AirflowFailException("Pod train-tensorflow returned a failure: exit code 2")

    monkeypatch.setattr(GpuTrainingPodOperator, "execute", pod_exits_2)
    run = training_dag().test(
        run_conf={**SLICE, "framework": "tensorflow", "trainer": "kubernetes", "cluster": "ephemeral"},
        mark_success_pattern=r"choose_trainer|prepare_cluster|check_gpu_capacity|train_mxnet|train_sagemaker_.*",
    )
    states = task_states(run)
    assert str(run.state) == "failed", states
    assert states["prepare_data"] == "success" and states["create_cluster"] == "success", states
    assert states["train_tensorflow"] == "failed" and pods == ["train_tensorflow"], states
    (train,) = [ti for ti in run.get_task_instances() if ti.task_id == "train_tensorflow"]
    assert train.try_number == 1  # the pod's failure, not retried
    assert states["evaluate"] == "upstream_failed", states
    assert states["needs_teardown"] == "success" and states["delete_cluster"] == "success", states
    calls = [json.loads(line)["argv"] for line in (tmp_path / ".fake_eksctl" / "calls.jsonl").read_text().splitlines()]
    verbs = [" ".join(argv[:2]) for argv in calls]
    assert "create cluster" in verbs and "delete cluster" in verbs
    assert verbs.index("create cluster") < verbs.index("delete cluster")
    name = ephemeral_cluster_name("eksml", run.run_id)
    state = json.loads((tmp_path / ".fake_eksctl" / "state.json").read_text())["clusters"]
    assert name not in state, state  # the run's cluster is gone
