"""Pinned upstream add-ons and the GPU readiness rule."""

from __future__ import annotations

import http.server
import json
import threading

import pytest
import yaml
from kubernetes.client import ApiClient

from eksml.cluster.addons import (
    KUSTOMIZATION,
    AddonError,
    addon_objects,
    addon_urls,
    apply_order,
    fetch_manifest,
    parse_manifest,
)
from eksml.cluster.apply import object_ref
from eksml.cluster.gpu import usable_gpu_nodes

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: op, namespace: mpi-operator}
---
# a comment-only document
---
apiVersion: v1
kind: Namespace
metadata: {name: mpi-operator}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: mpijobs.kubeflow.org}
"""


def test_kustomization_pins_released_versions():
    urls = addon_urls()
    assert any("/NVIDIA/k8s-device-plugin/v0.17." in u for u in urls)
    assert any("/kubeflow/mpi-operator/v0.8." in u and u.endswith("/deploy/v2beta1/mpi-operator.yaml") for u in urls)
    assert all(u.startswith("https://") for u in urls)


def test_unpinned_url_is_refused(tmp_path):
    doc = yaml.safe_load(KUSTOMIZATION.read_text())
    doc["resources"].append(
        "https://raw.githubusercontent.com/kubeflow/mpi-operator/master/deploy/v2beta1/mpi-operator.yaml"
    )
    path = tmp_path / "kustomization.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(AddonError, match="pinned to a release tag"):
        addon_urls(path)


def test_parse_and_order_a_manifest():
    objs = apply_order(parse_manifest(MANIFEST))
    assert [object_ref(o) for o in objs] == [
        "CustomResourceDefinition/mpijobs.kubeflow.org",
        "Namespace/mpi-operator",
        "Deployment/mpi-operator/op",
    ]
    with pytest.raises(AddonError, match="not a Kubernetes object"):
        parse_manifest("just: a mapping\n")


def test_fetch_from_a_loopback_mirror_and_refuse_plain_http():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = MANIFEST.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/mpi-operator.yaml"
        assert len(addon_objects([url])) == 3
    finally:
        server.shutdown()
    with pytest.raises(AddonError, match="https only"):
        fetch_manifest("http://example.com/manifest.yaml")


def _node(name: str, ready: str, gpus: str | None):
    allocatable = {"cpu": "32", "memory": "244Gi", **({"nvidia.com/gpu": gpus} if gpus is not None else {})}
    data = {
        "metadata": {"name": name},
        "status": {"allocatable": allocatable, "conditions": [{"type": "Ready", "status": ready}]},
    }

    class Response:  # ApiClient.deserialize reads .data
        pass

    response = Response()
    response.data = json.dumps(data)
    return ApiClient().deserialize(response, "V1Node")


def test_gpu_nodes_count_only_when_ready_and_advertising_gpus():
    nodes = [
        _node("ready-4", "True", "4"),
        _node("booting", "False", "4"),
        _node("no-plugin", "True", None),
        _node("ready-4b", "True", "4"),
    ]
    assert [n.name for n in usable_gpu_nodes(nodes, 4)] == ["ready-4", "ready-4b"]
    assert usable_gpu_nodes(nodes, 8) == []
    as_dicts = [
        {
            "metadata": {"name": "d"},
            "status": {"allocatable": {"nvidia.com/gpu": "1"}, "conditions": [{"type": "Ready", "status": "True"}]},
        }
    ]
    assert [n.name for n in usable_gpu_nodes(as_dicts, 1)] == ["d"]
