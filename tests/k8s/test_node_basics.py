"""A real node joined to the test control plane: pods really run on it.

containerd + runc start the containers (images imported from the project's own builds), CNI
gives them addresses on the node's bridge, the kubelet reports their status and serves their
logs through the API server, and kube-proxy routes a Service's ClusterIP to a pod.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

pytestmark = [pytest.mark.k8s, pytest.mark.node]


def wait_for(what: str, probe: Any, timeout: float = 180.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        ok, last = probe()
        if ok:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what} (last: {last})")


@pytest.fixture
def namespace(node_cluster: Any) -> Iterator[tuple[client.CoreV1Api, str]]:
    plane, _node = node_cluster
    core = client.CoreV1Api(plane.api_client("admin"))
    name = f"basics-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    yield core, name
    core.delete_namespace(name)


def pod(name: str, image: str, command: list[str], **extra: Any) -> dict[str, Any]:
    container = {"name": "main", "image": image, "imagePullPolicy": "IfNotPresent", "command": command, **extra}
    return {
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"restartPolicy": "Never", "containers": [container]},
    }


def test_node_is_ready_with_the_host_address(node_cluster: Any) -> None:
    plane, node = node_cluster
    got = client.CoreV1Api(plane.api_client("admin")).read_node(node.name)
    assert {a.type: a.address for a in got.status.addresses}["InternalIP"] == node.ip
    assert got.status.node_info.container_runtime_version.startswith("containerd://")
    assert got.status.node_info.kubelet_version == "v1.35.4"
    assert "kwok.x-k8s.io/node" not in (got.metadata.annotations or {})


def test_a_pod_runs_to_completion_and_its_log_is_served(node_cluster: Any, namespace: Any) -> None:
    core, ns = namespace
    _plane, node = node_cluster
    image = node.images["tf-fashion-mnist"].ref
    core.create_namespaced_pod(ns, pod("hello", image, ["python", "-c", "import os; print('uid', os.getuid())"]))

    def done() -> tuple[bool, Any]:
        phase = core.read_namespaced_pod("hello", ns).status.phase
        return phase in ("Succeeded", "Failed"), phase

    assert wait_for("pod hello to finish", done) == "Succeeded"
    log = core.read_namespaced_pod_log("hello", ns, _preload_content=False).data.decode()
    assert log.strip() == "uid 1000"  # the image's own non-root user


def test_a_service_cluster_ip_reaches_a_pod_through_kube_proxy(node_cluster: Any, namespace: Any) -> None:
    core, ns = namespace
    _plane, node = node_cluster
    image = node.images["inference"].ref
    server = pod("web", image, ["python", "-m", "http.server", "8080", "--directory", "/opt/eksml"])
    server["spec"]["restartPolicy"] = "Always"
    server["spec"]["containers"][0]["readinessProbe"] = {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
    core.create_namespaced_pod(ns, server)
    service = core.create_namespaced_service(
        ns,
        {
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )

    def ready() -> tuple[bool, Any]:
        status = core.read_namespaced_pod("web", ns).status
        return any(c.type == "Ready" and c.status == "True" for c in status.conditions or []), status.phase

    wait_for("pod web Ready", ready)

    def answers() -> tuple[bool, Any]:
        try:
            with urllib.request.urlopen(f"http://{service.spec.cluster_ip}/serve.py", timeout=3) as response:
                return response.status == 200, response.read()
        except OSError as exc:
            return False, exc

    body = wait_for("the Service's ClusterIP to answer", answers, timeout=60)
    assert b"Entrypoint of the inference image" in body


def test_cluster_dns_resolves_a_service_and_a_headless_services_pod(node_cluster: Any, namespace: Any) -> None:
    """CoreDNS (kubernetes plugin) on the node answers a pod's lookups: a Service's name gives its
    ClusterIP, and ``<hostname>.<headless service>.<ns>.svc`` a pod's own address (the names the
    MPI operator writes into its hostfile), resolved through the search path the kubelet writes."""
    core, ns = namespace
    _plane, node = node_cluster
    image = node.images["tf-fashion-mnist"].ref
    target = pod("peer", image, ["sleep", "600"])
    target["spec"] |= {"hostname": "peer-0", "subdomain": "peers"}
    core.create_namespaced_pod(ns, target)
    core.create_namespaced_service(
        ns,
        {
            "metadata": {"name": "peers"},
            "spec": {"clusterIP": "None", "selector": {"app": "peer"}, "publishNotReadyAddresses": True},
        },
    )
    web = core.create_namespaced_service(
        ns, {"metadata": {"name": "web"}, "spec": {"selector": {"app": "none"}, "ports": [{"port": 80}]}}
    )

    def running() -> tuple[bool, Any]:
        status = core.read_namespaced_pod("peer", ns).status
        return status.phase == "Running" and bool(status.pod_ip), status.pod_ip

    peer_ip = wait_for("pod peer Running", running)
    lookup = "import socket, sys; print(*(socket.gethostbyname(n) for n in sys.argv[1:]))"
    names = [f"peer-0.peers.{ns}.svc", "web"]
    client_pod = pod(
        "lookup", image, ["sh", "-c", 'cat /etc/resolv.conf >&2; exec python -c "$0" "$@"', lookup, *names]
    )
    core.create_namespaced_pod(ns, client_pod)

    def done() -> tuple[bool, Any]:
        phase = core.read_namespaced_pod("lookup", ns).status.phase
        return phase in ("Succeeded", "Failed"), phase

    phase = wait_for("pod lookup to finish", done)
    log = core.read_namespaced_pod_log("lookup", ns, _preload_content=False).data.decode()
    assert phase == "Succeeded", log
    assert f"nameserver {node.ip}" in log
    assert log.split()[-2:] == [peer_ip, web.spec.cluster_ip]
