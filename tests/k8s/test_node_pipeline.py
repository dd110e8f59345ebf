"""The training and deployment DAGs' Kubernetes path on a real node, with the DAGs' own tasks.

Training: ``prepare_data`` copies the real Fashion-MNIST into the S3 store on the node's
address and plans the run, ``train_tensorflow`` (the DAG's ``GpuTrainingPodOperator``) trains
in a pod, the mapped ``evaluate`` task (``WorkloadPodOperator``, unmapped with the plan's
evaluation spec as a mapped task instance is) scores the export in the inference image, and
``register`` and ``promote`` make it the champion. Deployment: ``resolve_version`` and
``deploy_and_smoke_test`` (``DeployModelOperator``) serve it behind a Service, the smoke test
going through the API server's service proxy as on EKS; a rollout to another version and a
rollback run while a client sends requests the whole time, through the Service's ClusterIP
(kube-proxy) and through the service proxy, and none may fail.

Each task is taken from its DAG file and its templates are rendered from the XComs of the tasks
before it; the tasks read their settings as in a worker (``EKSML_*`` variables, no settings
argument). GPU count 0 is the run's ``gpus`` param; the one 2-CPU node plays the training node
group for the training pod and the inference node group for the rest; the inference
Deployment runs ``inference_min_replicas=1`` (a second replica and the rollout's surge pod would
ask for more CPU than the node has). Not run here: ``validate_params`` (its aws preflight asks
IAM, EC2 and Service Quotas about the account: tested on moto in tests/integration), the
cluster group (there is no EKS cluster: the settings' Kubernetes connection is the cluster),
``publish_champion`` and ``record_champion`` (asset events and run notes need the scheduler's
database; ``record_deployment`` is what the latter calls and runs here).
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import NODE_BUCKET, node_role
from k8s_tasks import run_task, task_context
from project_files import load_dag

pytestmark = [pytest.mark.k8s, pytest.mark.node]

RUN_ID = "manual__2026-12-07T00:00:00+00:00"
PARAMS = {
    "framework": "tensorflow",
    "trainer": "kubernetes",
    "epochs": 2,
    "batch_size": 64,
    "gpus": 0,
    "limit_train": 2048,
    "limit_test": 512,
}
#: Wall times of the workloads on the node, printed at the end of each test.
FIGURES: dict[str, Any] = {}


def _remove_serving(cluster: dict[str, Any], settings: Any) -> None:
    """The model server's Deployment goes with the module: its pod holds CPU of the one 2-CPU
    node that later modules' pods need (they stayed Pending behind it)."""
    from kubernetes import client

    from eksml.serving.manifests import resource_name

    admin = cluster["node"].plane.api_client("admin")
    name, namespace = resource_name(settings), settings.inference_namespace
    try:
        client.AppsV1Api(admin).delete_namespaced_deployment(name, namespace, propagation_policy="Foreground")
    except client.ApiException as exc:
        if exc.status != 404:
            raise
    core = client.CoreV1Api(admin)
    selector = f"app.kubernetes.io/instance={name}"
    deadline = time.monotonic() + 120
    while core.list_namespaced_pod(namespace, label_selector=selector).items and time.monotonic() < deadline:
        time.sleep(1)


@pytest.fixture(scope="module")
def worker_env(training_cluster: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The settings as a worker reads them (``EKSML_*``), and the Airflow AWS connection to the
    node's S3 server for the tasks that run in the worker (prepare, register, promote, deploy)."""
    settings = training_cluster["settings"].replace(inference_min_replicas=1)
    chosen = (
        "profile",
        "store_uri",
        "kubernetes_conn_id",
        "image_registry",
        "image_tag",
        "pod_store_endpoint_url",
        "pod_store_secret",
        "inference_min_replicas",
    )
    env = {f"EKSML_{name.upper()}": str(getattr(settings, name)) for name in chosen}
    env["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": training_cluster["endpoint"], "region_name": "us-west-2"},
        }
    )
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from eksml.settings import resolve_settings

    assert resolve_settings() == settings  # the tasks see exactly these settings
    yield {**training_cluster, "settings": settings, "run": {}}
    _remove_serving(training_cluster, settings)
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _context(task_id: str, xcoms: dict[str, Any], dag_id: str) -> dict[str, Any]:
    """A task context whose ``ti.xcom_pull`` answers with ``xcoms`` (by task id) and whose run
    is a manual one (``run_facts``)."""
    context = task_context(task_id, run_id=RUN_ID)
    context["ti"].xcom_pull = lambda task_ids=None, key="return_value", **_kw: xcoms.get(task_ids)
    context["ti"].dag_id = dag_id
    context["dag_run"] = SimpleNamespace(
        run_id=RUN_ID, dag_id=dag_id, run_after=datetime(2026, 12, 7, tzinfo=UTC), conf={}
    )
    return context


def _rendered(task: Any, context: dict[str, Any]) -> Any:
    """A copy of the task with its templates rendered by Airflow (the DAG renders native
    objects), as each task instance gets its own."""
    task = copy.copy(task)
    task.render_template_fields(context)
    return task


def _timed(name: str, call: Any) -> Any:
    started = time.monotonic()
    result = call()
    FIGURES[name] = round(time.monotonic() - started, 1)
    return result


def test_training_dag_trains_evaluates_registers_and_promotes_on_the_node(
    worker_env: dict[str, Any], s3_on_node: tuple[str, Any]
) -> None:
    from eksml.cluster.node_contract import INFERENCE_ROLE
    from eksml.params import validate_training_params
    from eksml.registry import ModelRegistry
    from eksml.storage import store_path

    dag = load_dag("fashion_mnist_training")
    settings = worker_env["settings"]
    params = validate_training_params(PARAMS).to_dict()
    # What validate_params returns for these params (its preflight is not run: see above).
    validated = {"params": params, "source_uri": f"s3://{NODE_BUCKET}/store/data/slice", "profile": "aws"}
    xcoms: dict[str, Any] = {"validate_params": validated}

    prepare = dag.get_task("prepare_data").python_callable
    plan = _timed("prepare_data", lambda: prepare(validated, **_context("prepare_data", xcoms, dag.dag_id)))
    xcoms["prepare_data"] = plan
    candidate = plan["candidates"]["tensorflow"]
    assert candidate["spec"]["resources"]["gpus"] == 0

    context = _context("train_tensorflow", xcoms, dag.dag_id)
    train = _rendered(dag.get_task("train_tensorflow"), context)
    assert train.spec == candidate["spec"] and train.cluster_name == ""
    _timed("training pod", lambda: run_task(train, context, timeout=900))
    _s3_endpoint, s3 = s3_on_node
    staging = candidate["staging_uri"].removeprefix(f"s3://{NODE_BUCKET}/")
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=NODE_BUCKET, Prefix=staging)["Contents"]}
    assert f"{staging}/metrics.json" in listed and f"{staging}/saved_model/saved_model.pb" in listed

    (evaluation_spec,) = plan["evaluations"]
    context = _context("evaluate", xcoms, dag.dag_id)
    # A mapped task instance gets its expanded argument as resolved, unrendered; the rest is rendered.
    evaluate = dag.get_task("evaluate").unmap({"spec": evaluation_spec})
    evaluate.cluster_name = evaluate.render_template(evaluate.cluster_name, context)
    assert evaluate.cluster_name == "" and evaluate.spec == evaluation_spec
    with node_role(worker_env, INFERENCE_ROLE):
        _timed("evaluation pod", lambda: run_task(evaluate, context, timeout=900))
    evaluation = json.loads(s3.get_object(Bucket=NODE_BUCKET, Key=f"{staging}/evaluation.json")["Body"].read())
    assert evaluation["candidate"]["test_images"] == PARAMS["limit_test"]
    assert evaluation["candidate"]["test_accuracy"] > 0.3  # ten classes: chance is 0.1

    context = _context("register", xcoms, dag.dag_id)
    registered = _timed("register", lambda: dag.get_task("register").python_callable(plan, **context))
    pointer = _timed("promote", lambda: dag.get_task("promote").python_callable(registered, params=params))
    assert pointer and pointer["version"] == candidate["version"]
    champion = ModelRegistry(store_path(settings.models_root, settings)).champion()
    assert champion["version"] == candidate["version"]
    assert champion["test_accuracy"] == evaluation["candidate"]["test_accuracy"]
    worker_env["run"].update(plan=plan, champion=champion)
    print(f"[node] training DAG on the node ({PARAMS}): {FIGURES}")


class Client(threading.Thread):
    """Sends one prediction after another, alternately through the Service's ClusterIP (the
    kube-proxy path of an in-cluster client) and the API server's service proxy, until stopped;
    counts what was sent and what failed, and each change of the version that answered."""

    def __init__(self, cluster_ip: str, service_call: Any, model: str, image: list) -> None:
        super().__init__(daemon=True)
        self.cluster_ip, self.service_call, self.model = cluster_ip, service_call, model
        self.body = {"instances": [image]}
        self.sent = self.failed = 0
        self.failures: list[str] = []
        self.versions: list[str] = []
        self.stopping = threading.Event()

    def _via_cluster_ip(self) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://{self.cluster_ip}/v1/models/{self.model}:predict",
            data=json.dumps(self.body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())

    def run(self) -> None:
        while not self.stopping.is_set():
            via = "ClusterIP" if self.sent % 2 == 0 else "service proxy"
            self.sent += 1
            try:
                if via == "ClusterIP":
                    status, body = self._via_cluster_ip()
                else:
                    status, body = self.service_call("POST", f"/v1/models/{self.model}:predict", self.body)
            except Exception as exc:  # every way a request can fail counts
                status, body = 0, f"{type(exc).__name__}: {exc}"
            if status == 200 and isinstance(body, dict) and len(body.get("predictions") or []) == 1:
                if not self.versions or self.versions[-1] != body["model_version"]:
                    self.versions.append(body["model_version"])
            else:
                self.failed += 1
                self.failures.append(f"{via}: HTTP {status} {str(body)[:200]}")
            time.sleep(0.05)

    def stop(self) -> Client:
        self.stopping.set()
        self.join(60)
        return self


def test_deployment_dag_serves_rolls_out_with_no_failed_request_and_rolls_back(
    worker_env: dict[str, Any],
) -> None:
    from kubernetes import client

    from eksml.cluster.node_contract import INFERENCE_ROLE
    from eksml.kubernetes.hooks import DeploymentHook
    from eksml.registry import ModelRegistry
    from eksml.serving.manifests import VERSION_LABEL, label_value, resource_name
    from eksml.serving.smoke import load_test_images
    from eksml.storage import store_path

    run = worker_env["run"]
    if "champion" not in run:
        pytest.fail("needs the champion of test_training_dag_trains_evaluates_registers_and_promotes_on_the_node")
    settings = worker_env["settings"]
    dag = load_dag("model_deployment")
    first = run["champion"]["version"]
    # A second version to roll out to: the same export registered under another name (what is
    # rolled out is a new pod template and ReplicaSet, whatever the weights are).
    registry = ModelRegistry(store_path(settings.models_root, settings))
    second = f"{first}-b"
    metadata = registry.metadata(first)
    registry.register(second, store_path(metadata.pop("uri"), settings), metadata)
    name, namespace = resource_name(settings), settings.inference_namespace

    def deploy(version: str | None) -> dict[str, Any]:
        resolve = dag.get_task("resolve_version").python_callable
        xcoms = {"resolve_version": resolve(params={"version": version})}
        context = _context("deploy_and_smoke_test", xcoms, dag.dag_id)
        task = _rendered(dag.get_task("deploy_and_smoke_test"), context)
        result = task.execute(context)
        from eksml.registry import record_deployment

        record_deployment(xcoms["resolve_version"], settings)
        return result

    with node_role(worker_env, INFERENCE_ROLE):
        served = _timed("deployment ready + smoke test", lambda: deploy(None))
        assert served["version"] == first and served["smoke"]["passed"] and served["smoke"]["version"] == first
        core = worker_env["core"]
        (pod,) = [p for p in core.list_namespaced_pod(namespace).items if VERSION_LABEL in p.metadata.labels]
        assert pod.spec.node_name == worker_env["node"].name and pod.status.phase == "Running"

        cluster_ip = core.read_namespaced_service(name, namespace).spec.cluster_ip
        hook = DeploymentHook(conn_id=settings.kubernetes_conn_id)
        images, _labels = load_test_images(run["plan"]["data_uri"], 1, settings)
        traffic = Client(cluster_ip, hook.service_call(name, namespace), settings.model_name, images[0])
        traffic.start()
        time.sleep(3)  # answers before the rollout starts
        rolled = _timed("rollout", lambda: deploy(second))
        time.sleep(3)
        traffic.stop()
        FIGURES["rollout requests"] = {"sent": traffic.sent, "failed": traffic.failed}
        assert rolled["version"] == second and rolled["smoke"]["version"] == second
        assert traffic.failed == 0, f"{traffic.failed} of {traffic.sent} failed: {traffic.failures[:10]}"
        # Old and new pods both serve while the new one is Ready and the old one not yet gone;
        # once the rollout is done, only the new version answers.
        assert traffic.versions[0] == first and traffic.versions[-1] == second, traffic.versions

        traffic = Client(cluster_ip, hook.service_call(name, namespace), settings.model_name, images[0])
        traffic.start()
        back = _timed("rollback", lambda: deploy(first))
        time.sleep(3)
        traffic.stop()
        FIGURES["rollback requests"] = {"sent": traffic.sent, "failed": traffic.failed}
        assert back["version"] == first and traffic.versions[0] == second, traffic.versions
        assert traffic.versions[-1] == first, traffic.versions
        assert traffic.failed == 0, f"{traffic.failed} of {traffic.sent} failed: {traffic.failures[:10]}"
        assert registry.champion()["version"] == first  # the rollback is the champion again
        apps = client.AppsV1Api(worker_env["node"].plane.api_client("admin"))
        assert apps.read_namespaced_deployment(name, namespace).metadata.labels[VERSION_LABEL] == label_value(first)
    print(f"[node] deployment DAG on the node: {FIGURES}")
