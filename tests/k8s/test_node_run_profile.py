"""``make run-node``'s core on the real node: the kubernetes profile runs the training DAG and then
the deployment DAG against a cluster reached only through an Airflow ``kubernetes`` connection,
with S3 (moto) on the node's address, GPU count 0 from the run's conf, on a small slice.

What it shows: no EKS step runs (the cluster group is skipped), the TensorFlow pod trains from
S3 and exports there, the evaluation pod scores it, the registry promotes it, the Deployment
passes its readiness probe and the smoke test answers through the Service.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = [pytest.mark.k8s, pytest.mark.node]

ROOT = Path(__file__).resolve().parents[2]
CONF = {"epochs": 1, "limit_train": 2048, "limit_test": 512}


def run_node_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_node", ROOT / "scripts" / "run_node.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def profile_env(node_cluster: Any, airflow_db: str) -> Iterator[tuple[ModuleType, dict[str, str]]]:
    """The command's store and cluster preparation on the session's node, its settings in os.environ."""
    run_node = run_node_module()
    plane, node = node_cluster
    with run_node.store_on(node) as (endpoint, source):
        env = run_node.profile_env(plane, node, endpoint, source)
        run_node.prepare_cluster(plane, env)
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            yield run_node, env
        run_node.remove_workloads(plane, env)


def test_training_then_deployment_dag_in_the_kubernetes_profile(
    profile_env: tuple[ModuleType, dict[str, str]], tmp_path: Path
) -> None:
    from eksml.registry import ModelRegistry
    from eksml.report import latest_run_state
    from eksml.settings import resolve_settings
    from eksml.storage import store_path

    run_node, _env = profile_env
    conf = {**run_node.DEFAULT_CONF, **CONF}
    # A child process, as `make run-node` runs them: the task logs reach the full log through its
    # fds 1 and 2, which pytest's own capture would otherwise take first (the log came out empty).
    child = (
        "import json, sys; sys.path.insert(0, 'scripts'); import run_node; from pathlib import Path; "
        "log = Path(sys.argv[2]); "
        "sys.exit(0 if run_node.run_dags(json.loads(sys.argv[1]), log, log / 'timings') else 1)"
    )
    done = subprocess.run(
        [sys.executable, "-c", child, json.dumps(conf), str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "plugins")},
        capture_output=True,
        text=True,
        timeout=1500,
    )
    training_log = (tmp_path / "last-training.log").read_text()
    deployment_log = tmp_path / "last-deployment.log"
    assert done.returncode == 0, (
        done.stdout[-2000:]
        + done.stderr[-2000:]
        + training_log[-4000:]
        + (deployment_log.read_text()[-4000:] if deployment_log.exists() else "")
    )

    state, failed, _run = latest_run_state("fashion_mnist_training")
    assert (state, failed) == ("success", [])
    # No EKS step: the cluster group and the teardown were skipped, never run.
    for task in ("create_cluster", "prepare_cluster", "check_gpu_capacity", "delete_cluster"):
        assert f"[DAG TEST] starting task_id={task} " not in training_log
    assert "[ok] kubernetes cluster:" in training_log and "[ok] store: bucket 'eksml-node'" in training_log

    settings = resolve_settings()
    assert settings.profile == "kubernetes"
    champion = ModelRegistry(store_path(settings.models_root, settings)).champion()
    assert champion and champion["uri"].startswith("s3://eksml-node/store/")
    assert "V1 predict    :" in done.stdout and "through the Service" in done.stdout
    print(json.dumps({"champion": champion["version"], "accuracy": champion["test_accuracy"]}))
