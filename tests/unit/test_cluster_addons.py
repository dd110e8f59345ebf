"""Pinned upstream add-ons and the GPU readiness rule."""

from __future__ import annotations

import json

import pytest
import yaml
from kubernetes.client import ApiClient

from eksml.cluster.addons import (
    KUSTOMIZATION,
    AddonError,
    addon_files,
    addon_objects,
    parse_manifest,
)
from eksml.cluster.apply import apply_order, object_ref
from eksml.cluster.eks import usable_gpu_nodes

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


def test_vendored_add_ons_are_pinned_by_version_and_checksum_with_their_licences():
    names = [p.name for p in addon_files()]
    assert names == ["nvidia-device-plugin-v0.17.3.yml", "mpi-operator-v0.8.2.yaml"]
    folder = KUSTOMIZATION.parent
    assert "Apache License" in (folder / "LICENSE.nvidia-k8s-device-plugin").read_text()
    assert "Apache License" in (folder / "LICENSE.kubeflow-mpi-operator").read_text()
    images = {
        c["image"]
        for o in addon_objects()
        for c in (((o.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers", [])
    }
    assert {"nvcr.io/nvidia/k8s-device-plugin:v0.17.3", "mpioperator/mpi-operator:0.8.2"} <= images
    kinds = {o["kind"] for o in addon_objects()}
    assert {"CustomResourceDefinition", "DaemonSet", "Deployment"} <= kinds


def test_the_device_plugin_runs_only_on_the_gpu_nodes():
    """The upstream DaemonSet has no node selector: every CPU node would run a plugin that finds no GPU."""
    from eksml.cluster.node_contract import TRAIN_ROLE, node_selector

    (plugin,) = [o for o in addon_objects() if o["kind"] == "DaemonSet"]
    assert plugin["spec"]["template"]["spec"]["nodeSelector"] == node_selector(TRAIN_ROLE)
    assert plugin["spec"]["template"]["spec"]["tolerations"]  # the upstream tolerations are kept


def test_a_patch_with_lists_is_refused_rather_than_merged_wrongly(tmp_path):
    kustomization = _copy_addons(tmp_path)
    doc = yaml.safe_load(kustomization.read_text())
    doc["patches"][0]["patch"] = "spec:\n  template:\n    spec:\n      tolerations: []\n"
    kustomization.write_text(yaml.safe_dump(doc))
    with pytest.raises(AddonError, match="list fields in patches are not supported"):
        addon_objects(kustomization)


def _copy_addons(tmp_path):
    import shutil

    shutil.copytree(KUSTOMIZATION.parent, tmp_path / "addons")
    return tmp_path / "addons" / "kustomization.yaml"


def test_a_changed_add_on_file_is_refused(tmp_path):
    kustomization = _copy_addons(tmp_path)
    manifest = kustomization.parent / "mpi-operator-v0.8.2.yaml"
    manifest.write_text(manifest.read_text().replace("mpioperator/mpi-operator:0.8", "mpioperator/mpi-operator:latest"))
    with pytest.raises(AddonError, match="does not match its pinned SHA-256"):
        addon_objects(kustomization)


def test_a_url_or_an_unpinned_file_is_refused(tmp_path):
    kustomization = _copy_addons(tmp_path)
    doc = yaml.safe_load(kustomization.read_text())
    doc["resources"].append(
        "https://raw.githubusercontent.com/kubeflow/mpi-operator/master/deploy/v2beta1/mpi-operator.yaml"
    )
    kustomization.write_text(yaml.safe_dump(doc))
    with pytest.raises(AddonError, match="not URLs"):
        addon_files(kustomization)
    doc["resources"][-1] = "extra.yaml"
    (kustomization.parent / "extra.yaml").write_text(MANIFEST)
    kustomization.write_text(yaml.safe_dump(doc))
    with pytest.raises(AddonError, match="extra.yaml has no pinned SHA-256"):
        addon_files(kustomization)


def test_parse_and_order_a_manifest():
    objs = apply_order(parse_manifest(MANIFEST))
    assert [object_ref(o) for o in objs] == [
        "CustomResourceDefinition/mpijobs.kubeflow.org",
        "Namespace/mpi-operator",
        "Deployment/mpi-operator/op",
    ]
    with pytest.raises(AddonError, match="not a Kubernetes object"):
        parse_manifest("just: a mapping\n")


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
