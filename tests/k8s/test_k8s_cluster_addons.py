"""The add-ons step's server-side apply against a real API server: the MPI operator's published
manifest (its CRD is too large for client-side apply) and the project's own objects; a second
apply changes nothing."""

from __future__ import annotations

import pytest
import yaml
from conftest import aws_settings, pipeline_objects
from eksml.cluster.addons import parse_manifest
from eksml.cluster.apply import FIELD_MANAGER, apply_objects
from kubernetes import client
from kubernetes.dynamic import DynamicClient

pytestmark = pytest.mark.k8s


def _addon_objects(plane) -> list[dict]:
    manifest = plane.bin_dir.parent / "share" / "mpi-operator.yaml"
    return [o for o in parse_manifest(manifest.read_text(), str(manifest)) if o["kind"] != "Deployment"]


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
    objects = _addon_objects(prepared_cluster) + pipeline_objects(aws_settings("unused"))
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
    managers = {(m.manager, m.operation) for m in crd.metadata.managed_fields}
    assert (FIELD_MANAGER, "Apply") in managers
    too_big = len(yaml.safe_dump(crd.to_dict())) > 262144  # what client-side apply's annotation could not hold
    assert too_big


def test_project_namespaces_enforce_restricted_pod_security(prepared_cluster):
    core = client.CoreV1Api(prepared_cluster.api_client("admin"))
    for name in ("ml-training", "ml-serving"):
        labels = core.read_namespace(name).metadata.labels
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
