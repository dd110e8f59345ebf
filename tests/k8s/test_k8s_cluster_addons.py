"""The add-ons step against a real API server: the vendored add-ons (the MPI operator's CRD is
too large for client-side apply) and the project's own objects, applied server-side with the
project's apply code; a second apply changes nothing."""

from __future__ import annotations

import json

import pytest
from conftest import aws_settings, pipeline_objects
from kubernetes import client
from kubernetes.dynamic import DynamicClient

from eksml.cluster.addons import addon_objects, parse_manifest
from eksml.cluster.apply import FIELD_MANAGER, apply_objects

pytestmark = pytest.mark.k8s


def _addon_objects() -> list[dict]:
    """The vendored add-ons (checksums verified by ``addon_objects``) without their Deployments,
    whose pods kwok would only pretend to run (the MPI operator runs as a process instead)."""
    return [o for o in addon_objects() if o["kind"] != "Deployment"]


def _crd(objects: list[dict]) -> dict:
    (crd,) = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    return crd


def _resource_versions(api, objects) -> dict[str, str]:
    dynamic = DynamicClient(api)
    versions = {}
    for obj in objects:
        resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        meta = obj["metadata"]
        live = resource.get(name=meta["name"], namespace=meta.get("namespace") if resource.namespaced else None)
        versions[f"{obj['kind']}/{meta.get('namespace', '')}/{meta['name']}"] = live.metadata.resourceVersion
    return versions


def test_second_apply_is_a_no_op(prepared_cluster):
    api = prepared_cluster.api_client("admin")
    objects = _addon_objects() + pipeline_objects(aws_settings("unused"))
    apply_objects(api, objects, log=lambda _m: None)
    before = _resource_versions(api, objects)
    applied = apply_objects(api, objects, log=lambda _m: None)
    assert len(applied) == len(objects)
    assert _resource_versions(api, objects) == before  # nothing was written


def test_mpijob_crd_is_established_and_owned_by_the_apply(prepared_cluster):
    ext = client.ApiextensionsV1Api(prepared_cluster.api_client("admin"))
    crd = ext.read_custom_resource_definition("mpijobs.kubeflow.org")
    assert {c.type: c.status for c in crd.status.conditions}["Established"] == "True"
    assert [v.name for v in crd.spec.versions if v.served] == ["v2beta1"]
    assert (FIELD_MANAGER, "Apply") in {(m.manager, m.operation) for m in crd.metadata.managed_fields}
    # Client-side apply would keep the whole object in an annotation, which is limited to 256 KiB.
    assert len(json.dumps(_crd(addon_objects()))) > 262144


def test_vendored_crd_is_the_one_of_the_operator_binary_release(k8s_bin_dir):
    """The project's pinned manifest and the operator built from its Go module are one release."""
    published = k8s_bin_dir.parent / "share" / "mpi-operator.yaml"
    assert _crd(addon_objects()) == _crd(parse_manifest(published.read_text(), str(published)))


def test_project_namespaces_enforce_restricted_pod_security(prepared_cluster):
    core = client.CoreV1Api(prepared_cluster.api_client("admin"))
    for name in ("ml-training", "ml-serving"):
        labels = core.read_namespace(name).metadata.labels
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
