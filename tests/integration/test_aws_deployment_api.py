"""The aws profile's deployment (DeployModelOperator) end to end against a Kubernetes API on loopback.

The inference cluster is an EKS cluster on a moto server whose endpoint is the
``tests/fixtures/fake_kube_api.py`` stand-in; model versions live in S3 on the same moto
server. The test plays the Deployment controller and the kubelet: on every change of the
Deployment's pod template it records a ReplicaSet revision (as the controller does) and serves
the template's model with the real inference server, started from the local export of that
version; a model that cannot load leaves the rollout past its progress deadline. The smoke test
reaches the server through the API server's Service proxy path, as in a cluster.

What it does not prove: scheduling, probes, rolling-update pacing, the image itself (the server
runs from the local virtualenv), S3 access from a pod (the stand-in kubelet reads the local
export), or that a real API server accepts the objects.

Kept beside the real control plane and node tiers (``tests/k8s``) for what only it can show: the
cluster reached through the EKS API (a moto server's endpoint and CA) with a bearer token signed
by the Airflow AWS connection. A real API server would need EKS's token webhook
(aws-iam-authenticator) to accept that token, which is not built or run here; the stand-in records it.
"""

from __future__ import annotations

import json
from pathlib import Path

import inference_models as im
import pytest
from fixtures.fake_kube_api import FakeKubeApi
from fixtures.moto_eks import REGION, create_cluster, train_group
from test_cluster_routing import _context

pytestmark = pytest.mark.slow

CLUSTER = "serving-eks"
BUCKET = "serving-store"
STORE = f"s3://{BUCKET}/eksml"


def _controller(exports: dict[str, Path], servers: dict[str, tuple[object, int]]):
    """ReplicaSet revisions per template, and a real server per model for the Service's proxy."""
    from eksml.kubernetes.hooks import REVISION_ANNOTATION

    def react(api: FakeKubeApi, plural: str, obj: dict) -> None:
        if plural != "deployments":
            return
        meta, spec = obj["metadata"], obj["spec"]
        namespace = meta["namespace"]
        template = json.loads(json.dumps(spec["template"]))
        replicasets = api.items("replicasets", namespace)
        same = [rs for rs in replicasets if rs["spec"]["template"] == template]
        revision = int(same[0]["metadata"]["annotations"][REVISION_ANNOTATION]) if same else len(replicasets) + 1
        if not same:
            api.put(
                "apis/apps/v1",
                namespace,
                "replicasets",
                {
                    "metadata": {
                        "name": f"{meta['name']}-{revision}",
                        "annotations": {REVISION_ANNOTATION: str(revision)},
                        "labels": dict(spec["selector"]["matchLabels"]),
                        "ownerReferences": [
                            {"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"], "uid": meta["uid"]}
                        ],
                    },
                    "spec": {"selector": {"matchLabels": dict(spec["selector"]["matchLabels"])}, "template": template},
                },
            )
        generation = int(meta.get("generation", 0)) + 1
        meta["generation"] = generation
        meta.setdefault("annotations", {})[REVISION_ANNOTATION] = str(revision)
        args = template["spec"]["containers"][0]["args"]
        model_uri = args[args.index("--model-uri") + 1]
        replicas = spec.get("replicas", 1)
        try:
            if model_uri not in servers:
                port = im.free_port()
                servers[model_uri] = (im.start_server(exports[model_uri], port), port)
            api.proxies[(namespace, meta["name"])] = f"http://127.0.0.1:{servers[model_uri][1]}"
            obj["status"] = {
                "observedGeneration": generation,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "availableReplicas": replicas,
                "readyReplicas": replicas,
            }
        except RuntimeError as exc:  # the pods crash-loop: the rollout passes its progress deadline
            obj["status"] = {
                "observedGeneration": generation,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "availableReplicas": 0,
                "conditions": [
                    {
                        "type": "Progressing",
                        "status": "False",
                        "reason": "ProgressDeadlineExceeded",
                        "message": f"model server exited: {str(exc)[:200]}",
                    }
                ],
            }

    return react


@pytest.fixture(scope="module")
def serving(moto_client, moto_bucket, tmp_path_factory, dataset_dir):
    missing = im.missing_venvs("inference", "tf-fashion-mnist")
    if missing:
        pytest.skip(f"virtualenv(s) missing: {', '.join(missing)} (bash scripts/setup.sh)")
    root = tmp_path_factory.mktemp("aws-deploy")
    trained = im.trained_model("tensorflow")
    local = {
        "v-good": im.copy_version(trained, root / "v-good"),
        "v-broken": im.corrupt(im.copy_version(trained, root / "v-broken"), "truncate"),
    }
    s3 = moto_client("s3", REGION)
    moto_bucket(BUCKET, REGION)
    exports = {}
    for version, folder in local.items():
        uri = f"{STORE}/models/fashion-mnist/{version}"
        for path in folder.rglob("*"):
            if path.is_file():
                s3.put_object(
                    Bucket=BUCKET,
                    Key=f"eksml/models/fashion-mnist/{version}/{path.relative_to(folder)}",
                    Body=path.read_bytes(),
                )
        exports[uri] = folder
    api = FakeKubeApi(CLUSTER).start()
    servers: dict[str, tuple[object, int]] = {}
    api.on_apply.append(_controller(exports, servers))
    create_cluster(CLUSTER, train_group(max_size=2), server=api.url)
    mp = pytest.MonkeyPatch()
    for key, value in {
        "EKSML_PROFILE": "aws",
        "EKSML_STORE_URI": STORE,
        "EKSML_CLUSTER_NAME": CLUSTER,
        "EKSML_REGION": REGION,
        "EKSML_SOURCE_DATA_URI": str(dataset_dir),
    }.items():
        mp.setenv(key, value)
    yield {"api": api, "uris": {v: f"{STORE}/models/fashion-mnist/{v}" for v in local}}
    mp.undo()
    api.stop()
    for proc, _ in servers.values():
        im.stop_server(proc)


def _deploy(version: str, serving) -> dict:
    from eksml.serving.operators import DeployModelOperator

    return DeployModelOperator(
        task_id="deploy_and_smoke_test",
        model_uri=serving["uris"][version],
        version=version,
        cluster_name=CLUSTER,
        rollout_timeout=120,
    ).execute(_context())


def _served_version(api: FakeKubeApi) -> str:
    status, body = api._proxy("GET", "ml-serving", "fashion-mnist-inference", "v2/models/fashion-mnist", "", None)
    assert status == 200, body
    return body["versions"][0] if "versions" in body else body.get("version")


def _deployment_model(api: FakeKubeApi) -> str:
    (deployment,) = api.items("deployments", "ml-serving")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args[args.index("--model-uri") + 1]


def test_a_version_is_served_after_its_smoke_test_through_the_service(serving) -> None:
    result = _deploy("v-good", serving)
    assert result["version"] == "v-good" and result["smoke"]["passed"] is True
    assert _deployment_model(serving["api"]) == serving["uris"]["v-good"]
    assert _served_version(serving["api"]) == "v-good"
    patches = [r for r in serving["api"].requests if r.method == "PATCH"]
    assert patches and all(r.token and r.token.startswith("k8s-aws-v1.") for r in patches)


def test_a_broken_version_is_rolled_back_and_the_previous_keeps_serving(serving) -> None:
    from eksml.serving.operators import RolloutError

    with pytest.raises(RolloutError, match="(?s)rollout failed: .*progress deadline.*rolled back to revision 1"):
        _deploy("v-broken", serving)
    assert _deployment_model(serving["api"]) == serving["uris"]["v-good"]
    assert _served_version(serving["api"]) == "v-good"
