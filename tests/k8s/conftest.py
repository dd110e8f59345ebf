"""Session fixtures of the ``k8s`` tier: real control planes built from source (see k8s_controlplane).

``control_plane`` is started once per session and shared; ``second_control_plane`` is an
independent cluster for tests that need two. Both are skipped, with the reason, when the
binaries are not built (no Go: see ``tools/k8s-testenv/build.sh``). When a test that uses
one fails, the tail of every component's log is added to its report.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from k8s_controlplane import ControlPlane, Identity, locate_binaries, remove_workdir
from k8s_node import Image, RealNode, build_coredns, build_images, missing_prerequisites

#: The pipeline's own identity: a user in the group the project's RoleBindings name, as an EKS
#: access entry maps the Airflow workers' IAM principal.
PIPELINE = "pipeline"
ACCOUNT_ID = "123456789012"

_planes: list[ControlPlane] = []
_nodes: list[RealNode] = []


def _node_groups() -> tuple[Any, ...]:
    from eksml.cluster.request import (
        ClusterRequest,
        inference_node_group,
        train_node_group,
    )
    from eksml.settings import Settings

    request = ClusterRequest.from_settings(Settings(profile="aws"))
    return (train_node_group(request), inference_node_group(request))


def _identities() -> dict[str, Identity]:
    from eksml.cluster.request import PIPELINE_GROUP

    return {PIPELINE: Identity("eksml-pipeline", (PIPELINE_GROUP,))}


@pytest.fixture(scope="session")
def k8s_bin_dir() -> Path:
    found, reason = locate_binaries()
    if found is None:
        pytest.skip(f"no test control plane: {reason}")
    return found


def _start(name: str, bin_dir: Path) -> ControlPlane:
    workdir = Path(tempfile.mkdtemp(prefix=f"eksml-k8s-{name}-"))
    plane = ControlPlane(
        name=name, bin_dir=bin_dir, workdir=workdir, identities=_identities(), node_groups=_node_groups()
    )
    plane.start()
    _planes.append(plane)
    sys.stderr.write(f"\n[k8s] control plane {name} up in {plane.startup_seconds:.1f} s at {plane.server}\n")
    return plane


def _connection(conn_id: str, kubeconfig: Path) -> Iterator[str]:
    var = f"AIRFLOW_CONN_{conn_id.upper()}"
    os.environ[var] = json.dumps({"conn_type": "kubernetes", "extra": {"kube_config_path": str(kubeconfig)}})
    yield conn_id
    os.environ.pop(var, None)


@contextlib.contextmanager
def node_connection(kubeconfig: Path, conn_id: str = "kubernetes_node") -> Iterator[str]:
    """An Airflow ``kubernetes`` connection to the real node's control plane, while in the block."""
    yield from _connection(conn_id, kubeconfig)


@pytest.fixture(scope="session")
def control_plane(k8s_bin_dir: Path) -> Iterator[ControlPlane]:
    plane = _start("primary", k8s_bin_dir)
    yield plane
    plane.stop()
    remove_workdir(plane.workdir)  # a failing test already carries the component logs


@pytest.fixture(scope="session")
def second_control_plane(k8s_bin_dir: Path) -> Iterator[ControlPlane]:
    plane = _start("second", k8s_bin_dir)
    yield plane
    plane.stop()
    remove_workdir(plane.workdir)


@pytest.fixture(scope="session")
def pipeline_conn(control_plane: ControlPlane) -> Iterator[str]:
    """An Airflow ``kubernetes`` connection acting as the pipeline identity on the primary cluster."""
    yield from _connection("kubernetes_testenv", control_plane.kubeconfig(PIPELINE))


@pytest.fixture(scope="session")
def admin_conn(control_plane: ControlPlane) -> Iterator[str]:
    """Cluster admin on the primary cluster: what a platform engineer applies the add-ons as."""
    yield from _connection("kubernetes_testenv_admin", control_plane.kubeconfig("admin"))


def aws_settings(kubernetes_conn_id: str, **changes: Any) -> Any:
    """The aws profile's settings, talking to a test cluster through ``kubernetes_conn_id``."""
    from eksml.settings import Settings

    return Settings(
        profile="aws",
        store_uri="s3://eksml-bucket/store",
        kubernetes_conn_id=kubernetes_conn_id,
        image_registry="registry.test/eksml",
        image_tag="1.0.0",
    ).replace(**changes)


def pipeline_objects(settings: Any) -> list[dict[str, Any]]:
    """The project's own objects for a shared cluster (namespaces, service accounts, Roles, autoscaler)."""
    from eksml.cluster.objects import render_kubernetes_objects

    return render_kubernetes_objects(settings, account_id=ACCOUNT_ID)


@pytest.fixture(scope="session")
def prepared_cluster(control_plane: ControlPlane) -> ControlPlane:
    """The primary cluster after the add-ons step's own objects were applied (as cluster admin)."""
    from eksml.cluster.apply import apply_objects

    apply_objects(control_plane.api_client("admin"), pipeline_objects(aws_settings("unused")), log=lambda _m: None)
    return control_plane


#: Images the node tier runs (besides the base and pause images), by folder under images/.
NODE_IMAGES = ("tf-fashion-mnist", "inference", "mxnet-horovod")


@pytest.fixture(scope="session")
def node_images() -> dict[str, Image]:
    """The project's images built from their Dockerfiles FROM the local base (cached by content hash)."""
    reason = missing_prerequisites()
    if reason:
        pytest.skip(f"no image builds: {reason}")
    started = time.monotonic()
    images = build_images(*NODE_IMAGES)
    sys.stderr.write(f"\n[node] images ready in {time.monotonic() - started:.1f} s\n")
    return images


@pytest.fixture(scope="session")
def node_cluster(k8s_bin_dir: Path, node_images: dict[str, Image]) -> Iterator[tuple[ControlPlane, RealNode]]:
    """A control plane without kwok and one real node joined to it; on stop, the host is checked
    for what the node could leave behind (processes, mounts, iptables chains, sysctls)."""
    reason = missing_prerequisites(k8s_bin_dir)
    if reason:
        pytest.skip(f"no real node: {reason}")
    coredns = build_coredns()  # cluster DNS (cached like the images)
    workdir = Path(tempfile.mkdtemp(prefix="eksml-node-", dir="/tmp"))  # short: unix socket paths
    plane = ControlPlane(name="node", bin_dir=k8s_bin_dir, workdir=workdir / "cp", identities=_identities(), kwok=False)
    plane.start()
    _planes.append(plane)
    node = RealNode(plane, workdir / "node", node_images, coredns=coredns)
    try:
        node.start()
    except BaseException:
        plane.stop()
        raise
    _nodes.append(node)
    sys.stderr.write(
        f"\n[node] control plane up in {plane.startup_seconds:.1f} s, node {node.name} Ready "
        f"(containerd, kubelet, kube-proxy) in {node.startup_seconds:.1f} s\n"
    )
    yield plane, node
    node.stop(keep_lock=True)
    plane.stop()
    leftovers = node.leftovers()  # before another session's node may start
    node.release()
    remove_workdir(workdir)
    assert not leftovers, f"the node left these behind: {leftovers}"


#: The bucket of the S3 server on the node's address, and the Secret holding its keys in each
#: workload namespace (``pod_store_secret``).
NODE_BUCKET = "eksml-bucket"
NODE_STORE_SECRET = "store-keys"
DATASET = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def s3_on_node(node_cluster: tuple[ControlPlane, RealNode]) -> Iterator[tuple[str, Any]]:
    """A moto server on the node's address (pods cannot reach the host's loopback), its bucket
    holding the real Fashion-MNIST files under ``store/data/slice``."""
    import boto3
    from moto.server import ThreadedMotoServer

    _plane, node = node_cluster
    server = ThreadedMotoServer(ip_address=node.ip, port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-west-2",
    )
    s3.create_bucket(Bucket=NODE_BUCKET, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    for path in sorted(DATASET.glob("*-ubyte.gz")):
        with gzip.open(path) as check:
            check.read(16)  # a real IDX file, not a placeholder
        s3.upload_file(str(path), NODE_BUCKET, f"store/data/slice/{path.name}")
    yield endpoint, s3
    server.stop()


@pytest.fixture(scope="session")
def training_cluster(
    node_cluster: tuple[ControlPlane, RealNode], s3_on_node: tuple[str, Any]
) -> Iterator[dict[str, Any]]:
    """The project's namespaces, accounts and Roles, the store's Secret in each workload
    namespace, the node in the training node group, and the settings a user of such a cluster
    would set."""
    from kubernetes import client

    from eksml.cluster.apply import apply_objects
    from eksml.cluster.node_contract import NODE_ROLE_LABEL, TRAIN_ROLE

    plane, node = node_cluster
    endpoint, _s3 = s3_on_node
    admin = plane.api_client("admin")
    with node_connection(plane.kubeconfig(PIPELINE)) as conn_id:
        settings = aws_settings(
            conn_id,
            image_registry=node.image_registry,
            image_tag=node.image_tag,
            pod_store_endpoint_url=endpoint,
            pod_store_secret=NODE_STORE_SECRET,
        )
        # The cluster autoscaler's Deployment belongs to EKS node groups; nothing here to scale.
        objects = [o for o in pipeline_objects(settings) if o["kind"] != "Deployment"]
        apply_objects(admin, objects, log=lambda _m: None)
        core = client.CoreV1Api(admin)
        for namespace in (settings.namespace, settings.inference_namespace):
            core.create_namespaced_secret(
                namespace,
                {
                    "metadata": {"name": NODE_STORE_SECRET},
                    "stringData": {
                        "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-west-2",
                    },
                },
            )
        core.patch_node(node.name, {"metadata": {"labels": {NODE_ROLE_LABEL: TRAIN_ROLE}}})
        yield {"settings": settings, "core": core, "node": node, "endpoint": endpoint}


@contextlib.contextmanager
def node_role(cluster: dict[str, Any], role: str) -> Iterator[None]:
    """The one node plays the node group of ``role`` (``train`` or ``inference``) in the block,
    and the training node group again after it."""
    from eksml.cluster.node_contract import NODE_ROLE_LABEL, TRAIN_ROLE

    name = cluster["node"].name
    cluster["core"].patch_node(name, {"metadata": {"labels": {NODE_ROLE_LABEL: role}}})
    try:
        yield
    finally:
        cluster["core"].patch_node(name, {"metadata": {"labels": {NODE_ROLE_LABEL: TRAIN_ROLE}}})


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    uses_a_plane = {"control_plane", "second_control_plane", "node_cluster"} & set(getattr(item, "fixturenames", ()))
    if report.failed and _planes and uses_a_plane:
        for plane in _planes:
            report.sections.append((f"control plane {plane.name}: component logs", plane.logs(60)))
        for node in _nodes:
            report.sections.append((f"node {node.name}: component logs", node.logs(60)))
    return report


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of the Docker stack's Airflow image last: `make test` builds that image, the longest
    build, beside these tiers, and the ``airflow_image`` fixture waits for it (scripts/test.sh)."""
    items.sort(key=lambda item: "airflow_image" in getattr(item, "fixturenames", ()))
