"""The training and deployment DAGs in the kubernetes profile, on the built-in real node.

``make run-node`` (``scripts/run_node.sh``) runs this after the set-up. It starts a real
Kubernetes cluster on this host (the test control plane and one real node: containerd, kubelet,
kube-proxy), an S3 server (moto) on the node's address holding the real Fashion-MNIST, makes the
Airflow ``kubernetes`` and ``aws`` connections, then runs both DAGs exactly as a user of any
cluster would (``EKSML_PROFILE=kubernetes``; GPU count 0 through the run's conf), prints where the
model went and what the served model answers through its Service, and stops the cluster, checking
that the host is left as it was found.

The node harness lives in ``tests/k8s`` (``k8s_controlplane``, ``k8s_node``) because the ``node``
test tier is its first user; this command imports it rather than keeping a second copy of how a
node starts and, above all, how it is cleaned up.

    python scripts/run_node.py --conf '{"epochs": 1}' --log-dir .local/airflow-node
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "k8s"))

from k8s_controlplane import ControlPlane, Identity, locate_binaries, remove_workdir  # noqa: E402
from k8s_node import RealNode, build_images, missing_prerequisites  # noqa: E402

DATASET = Path("/usr/share/datasets/fashion-mnist")
BUCKET = "eksml-node"
#: The pipeline's identity on the node's cluster: a user in the group the project's RoleBindings name.
PIPELINE = "pipeline"
CONN_ID = "eksml_node"
STORE_SECRET = "store-keys"
#: moto accepts any key; the pods get these from the Secret, Airflow from its connection.
KEYS = {
    "AWS_ACCESS_KEY_ID": "eksml-node",
    "AWS_SECRET_ACCESS_KEY": "eksml-node-secret",
    "AWS_DEFAULT_REGION": "us-west-2",
}
#: The run's defaults (its conf wins): one TensorFlow candidate on CPU, on a slice of the real data.
DEFAULT_CONF = {
    "trainer": "kubernetes",
    "framework": "tensorflow",
    "gpus": 0,
    "epochs": 1,
    "limit_train": 6000,
    "limit_test": 1000,
}
#: The images each framework's run needs on the node.
IMAGES = {"tensorflow": ("tf-fashion-mnist", "inference"), "mxnet": ("mxnet-horovod", "inference")}


def say(message: str) -> None:
    print(message, flush=True)


@dataclass
class NodeCluster:
    plane: ControlPlane
    node: RealNode
    endpoint: str
    env: dict[str, str]


def pipeline_identity() -> dict[str, Identity]:
    from eksml.cluster.request import PIPELINE_GROUP

    return {PIPELINE: Identity("eksml-pipeline", (PIPELINE_GROUP,))}


def upload_dataset(s3: Any) -> str:
    """The real Fashion-MNIST IDX files into the bucket: the run's source data, read through S3."""
    files = sorted(DATASET.glob("*-ubyte.gz"))
    if len(files) != 4:
        raise SystemExit(f"expected the four Fashion-MNIST files in {DATASET} (Debian: dataset-fashion-mnist)")
    for path in files:
        with gzip.open(path) as check:
            check.read(16)  # a real IDX file, not a placeholder
        s3.upload_file(str(path), BUCKET, f"source/fashion-mnist/{path.name}")
    return f"s3://{BUCKET}/source/fashion-mnist"


def profile_env(plane: ControlPlane, node: RealNode, endpoint: str, source: str) -> dict[str, str]:
    """What a user of the kubernetes profile sets: the settings, and the two Airflow connections."""
    return {
        "EKSML_PROFILE": "kubernetes",
        "EKSML_KUBERNETES_CONN_ID": CONN_ID,
        "EKSML_STORE_URI": f"s3://{BUCKET}/store",
        "EKSML_SOURCE_DATA_URI": source,
        "EKSML_POD_STORE_ENDPOINT_URL": endpoint,
        "EKSML_POD_STORE_SECRET": STORE_SECRET,
        "EKSML_IMAGE_REGISTRY": node.image_registry,
        "EKSML_IMAGE_TAG": node.image_tag,
        # One node: no node groups to choose between, and one server is enough.
        "EKSML_NODE_ROLES": "false",
        "EKSML_INFERENCE_MIN_REPLICAS": "1",
        "EKSML_INFERENCE_MAX_REPLICAS": "1",
        f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(
            {"conn_type": "kubernetes", "extra": {"kube_config_path": str(plane.kubeconfig(PIPELINE))}}
        ),
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
            {
                "conn_type": "aws",
                "login": KEYS["AWS_ACCESS_KEY_ID"],
                "password": KEYS["AWS_SECRET_ACCESS_KEY"],
                "extra": {"endpoint_url": endpoint, "region_name": KEYS["AWS_DEFAULT_REGION"]},
            }
        ),
    }


def prepare_cluster(plane: ControlPlane, env: dict[str, str]) -> None:
    """As the cluster's admin, what the kubernetes profile expects to find: the project's
    namespaces, service accounts and Roles, and the store's keys as a Secret in each namespace."""
    from kubernetes import client

    from eksml.cluster.apply import apply_objects
    from eksml.cluster.objects import render_kubernetes_objects

    settings = settings_of(env)
    # The cluster autoscaler's Deployment belongs to EKS node groups: nothing to scale here.
    objects = [o for o in render_kubernetes_objects(settings, account_id="000000000000") if o["kind"] != "Deployment"]
    admin = plane.api_client("admin")
    apply_objects(admin, objects, log=lambda _m: None)
    core = client.CoreV1Api(admin)
    secret = {"metadata": {"name": STORE_SECRET}, "stringData": KEYS}
    for namespace in workload_namespaces(env):
        try:
            core.create_namespaced_secret(namespace, secret)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            core.replace_namespaced_secret(STORE_SECRET, namespace, secret)


def settings_of(env: dict[str, str]) -> Any:
    """The settings a run in ``env`` resolves (its ``EKSML_*`` variables)."""
    from eksml.settings import load_settings

    return load_settings({k.removeprefix("EKSML_").lower(): v for k, v in env.items() if k.startswith("EKSML_")})


def workload_namespaces(env: dict[str, str]) -> tuple[str, ...]:
    settings = settings_of(env)
    return tuple(dict.fromkeys((settings.namespace, settings.inference_namespace)))


def remove_workloads(plane: ControlPlane, env: dict[str, str]) -> None:
    """Delete the Deployments the run made (and so their pods): the node deletes every pod on
    stop, and a Deployment would only start its servers again."""
    from kubernetes import client

    apps = client.AppsV1Api(plane.api_client("admin"))
    for namespace in workload_namespaces(env):
        apps.delete_collection_namespaced_deployment(namespace, propagation_policy="Foreground")


@contextlib.contextmanager
def store_on(node: RealNode) -> Iterator[tuple[str, str]]:
    """S3 (moto) on the node's address, pods cannot reach the host's loopback, its bucket
    holding the real Fashion-MNIST; yields the endpoint and the source data's URI."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=node.ip, port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"],
            region_name=KEYS["AWS_DEFAULT_REGION"],
        )
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": KEYS["AWS_DEFAULT_REGION"]})
        yield endpoint, upload_dataset(s3)
    finally:
        server.stop()


@contextlib.contextmanager
def node_cluster(images: tuple[str, ...], workdir: Path) -> Iterator[NodeCluster]:
    """A control plane, the real node joined to it and S3 on the node's address, ready for the
    kubernetes profile; everything stopped on exit, and the host checked for leftovers."""
    bin_dir, reason = locate_binaries()
    if bin_dir is None:
        raise SystemExit(f"no control plane binaries: {reason} (scripts/setup.sh --k8s-testenv builds them)")
    problem = missing_prerequisites(bin_dir)
    if problem:
        raise SystemExit(f"no real node here: {problem}")
    t0 = time.monotonic()
    built = build_images(*images)
    say(f"   images ready in {time.monotonic() - t0:.0f} s: {', '.join(sorted(built))}")
    plane = ControlPlane(
        name="node", bin_dir=bin_dir, workdir=workdir / "cp", identities=pipeline_identity(), kwok=False
    )
    node = RealNode(plane, workdir / "node", built)
    try:
        plane.start()
        node.start()
        say(
            f"   control plane up in {plane.startup_seconds:.0f} s; "
            f"node {node.name} Ready in {node.startup_seconds:.0f} s"
        )
        with store_on(node) as (endpoint, source):
            say(f"   S3 (moto) at {endpoint}; the real Fashion-MNIST uploaded to {source}")
            env = profile_env(plane, node, endpoint, source)
            prepare_cluster(plane, env)
            try:
                yield NodeCluster(plane, node, endpoint, env)
            finally:
                remove_workloads(plane, env)
    finally:
        # A second Ctrl-C must not cut the clean-up short: that would leave the bridge, iptables
        # chains and the kubelet's sysctls on the host for the next node to inherit.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        say("   stopping the node and restoring the host (Ctrl-C is ignored until that is done)")
        node.stop()
        plane.stop()
        leftovers = node.leftovers()
        remove_workdir(workdir)
        if leftovers:
            say(f"   the node left these behind: {leftovers}")
        else:
            say("   node stopped; the host is as it was (no process, mount, link, iptables chain or sysctl left)")


def report_serving(count: int = 8) -> None:
    """Ask the served model about real test images through its Service (the API server's proxy)."""
    from eksml.kubernetes.hooks import DeploymentHook
    from eksml.registry import ModelRegistry
    from eksml.serving.manifests import resource_name
    from eksml.serving.smoke import load_test_images
    from eksml.settings import resolve_settings
    from eksml.storage import store_path

    settings = resolve_settings()
    champion = ModelRegistry(store_path(settings.models_root, settings)).champion() or {}
    name, namespace = resource_name(settings), settings.inference_namespace
    call = DeploymentHook(conn_id=settings.kubernetes_conn_id).service_call(name, namespace)
    images, labels = load_test_images(settings.source_data_uri, count, settings)
    path = f"/v1/models/{settings.model_name}:predict"
    status, body = call("POST", path, {"instances": images})
    if status != 200:
        raise SystemExit(f"POST service/{name}{path} answered {status}: {body}")
    print(f"serving       : {body.get('model_version', champion.get('version'))} as service {namespace}/{name}")
    print(f"model         : {champion.get('uri')} (champion, accuracy {champion.get('test_accuracy')})")
    hits = sum(p["class"] == label for p, label in zip(body["predictions"], labels, strict=True))
    print(f"V1 predict    : {hits}/{len(labels)} real test images right through the Service")


def run_dags(conf: dict[str, Any], log_dir: Path, timings: Path) -> bool:
    """Both DAGs in this Airflow process (as ``make run``), in the environment already set."""
    from eksml import main_job

    started = time.time()
    if not main_job.run("training", json.dumps(conf), ROOT / "dags", log_dir, timings, started):
        return False
    log_path = log_dir / main_job.SECTIONS["serving"][1]
    print(f"== model_deployment\n   full log: {log_path}", flush=True)
    with main_job.condensed_output(log_path):
        succeeded = main_job.dags_test("model_deployment", ROOT / "dags" / "model_deployment.py", None)
    from eksml.report import latest_run_state

    state, failed, _run_id = latest_run_state("model_deployment")
    if not succeeded or state != "success":
        print(f"model_deployment: {state or 'no run'}; failed tasks: {', '.join(failed) or '-'}", file=sys.stderr)
        return False
    report_serving()
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", default="{}", help="the training run's conf (a JSON object); GPU count 0 by default")
    parser.add_argument("--log-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    from eksml.main_job import conf_problem

    conf = {**DEFAULT_CONF, **json.loads(args.conf or "{}")}
    problem = conf_problem(json.dumps(conf))
    if problem:
        print(f"error: CONF {problem}", file=sys.stderr)
        return 2
    frameworks = ("tensorflow", "mxnet") if conf["framework"] == "both" else (conf["framework"],)
    images = tuple(dict.fromkeys(name for f in frameworks for name in IMAGES[f]))
    args.log_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="eksml-run-node-", dir="/tmp"))  # short: unix socket paths
    say("== the real node (images, control plane, containerd + kubelet + kube-proxy, S3)")
    with node_cluster(images, workdir) as cluster:
        os.environ.update(cluster.env)
        return 0 if run_dags(conf, args.log_dir, args.log_dir / "run-timings") else 1


if __name__ == "__main__":
    sys.exit(main())
