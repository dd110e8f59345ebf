"""The model_deployment DAG end to end in the local profile (``dag.test()``, real model server).

Registered versions are real exports of the TF image trained on a slice of Fashion-MNIST
(``tests/integration/inference_models.py``). The DAG deploys the champion; a run with
``version`` rolls back to another registered version, which then becomes champion; a broken
version fails its deploy, the previous version keeps answering and the champion stays.
"""

from __future__ import annotations

import json
import socket
import sys
import urllib.request
from pathlib import Path

import pytest
from project_files import load_dag

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import inference_models as im  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, airflow_db, dataset_dir):
    missing = im.missing_venvs("inference", "tf-fashion-mnist")
    if missing:
        pytest.skip(f"virtualenv(s) missing: {', '.join(missing)} (bash scripts/setup.sh)")
    import eksml.serving.local as serving_local
    from eksml.registry import ModelRegistry
    from eksml.settings import load_settings
    from eksml.storage import store_path

    root = tmp_path_factory.mktemp("deployment-dag")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        "EKSML_PROFILE": "local",
        "EKSML_STORE_URI": (root / "store").as_uri(),
        "EKSML_INFERENCE_PORT": str(port),
        "EKSML_SOURCE_DATA_URI": str(dataset_dir),
        "EKSML_SERVING_DIR": str(root / "serving"),
    }  # never the developer's own server
    mp = pytest.MonkeyPatch()
    for key, value in env.items():
        mp.setenv(key, value)
    settings = load_settings()
    registry = ModelRegistry(store_path(settings.models_root, settings))
    trained = im.trained_model("tensorflow")
    exports = {
        "v-a": im.copy_version(trained, root / "exports" / "v-a"),
        "v-b": im.copy_version(trained, root / "exports" / "v-b"),
    }
    exports["v-broken"] = im.corrupt(im.copy_version(trained, root / "exports" / "v-broken"), "truncate")
    accuracy = json.loads((trained / "metrics.json").read_text())["test_accuracy"]
    for version, folder in exports.items():
        registry.register(
            version,
            store_path(folder.as_uri(), settings),
            {
                "run_id": version,
                "framework": "tensorflow",
                "data_uri": str(dataset_dir),
                "metrics": {"test_accuracy": accuracy},
            },
        )
    registry.promote("v-a", test_accuracy=accuracy, reason="trained")
    yield {
        "dag": load_dag("model_deployment"),
        "registry": registry,
        "port": port,
        "settings": settings,
        "state": root / "serving",
    }
    serving_local.stop_local(settings, root / "serving")
    mp.undo()


def served_version(port: int) -> str:
    images, _ = im.real_test_images(4)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/models/fashion-mnist:predict",
        data=json.dumps({"instances": images}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["model_version"]


def states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_deploys_the_champion(deployment):
    run = deployment["dag"].test()
    assert str(run.state) == "success", states(run)
    assert served_version(deployment["port"]) == "v-a"


def test_rollback_by_version_serves_it_and_makes_it_champion(deployment):
    run = deployment["dag"].test(run_conf={"version": "v-b"})
    assert str(run.state) == "success", states(run)
    assert served_version(deployment["port"]) == "v-b"
    assert deployment["registry"].champion()["version"] == "v-b"
    assert deployment["registry"].history()[-1]["reason"] == "manual redeploy"


def test_a_broken_version_fails_and_the_previous_keeps_serving(deployment):
    run = deployment["dag"].test(run_conf={"version": "v-broken"})
    assert str(run.state) == "failed"
    assert states(run)["deploy_and_smoke_test"] == "failed"
    assert states(run)["record_champion"] == "upstream_failed"
    assert served_version(deployment["port"]) == "v-b"
    assert deployment["registry"].champion()["version"] == "v-b"  # the champion did not move either
