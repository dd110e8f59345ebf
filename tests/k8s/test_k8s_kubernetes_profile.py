"""The kubernetes profile's preflight against a real API server: the pipeline identity's
connection passes where the project's namespaces and Roles are applied, and a namespace
without them is named with the fix (a 403 from real RBAC, not a guess)."""

from __future__ import annotations

import pytest
from conftest import aws_settings

from eksml.preflight import ERROR, OK
from eksml.preflight_kubernetes import check_cluster

pytestmark = pytest.mark.k8s


def test_the_prepared_namespaces_pass(prepared_cluster, pipeline_conn: str) -> None:
    settings = aws_settings(pipeline_conn).replace(profile="kubernetes")
    findings = {f.check: f for f in check_cluster(settings)}
    assert {f.level for f in findings.values()} == {OK}, findings
    assert prepared_cluster.server in findings["kubernetes cluster"].message


def test_a_namespace_without_the_projects_roles_is_named(prepared_cluster, pipeline_conn: str) -> None:
    settings = aws_settings(pipeline_conn).replace(profile="kubernetes", inference_namespace="not-prepared")
    findings = {f.check: f for f in check_cluster(settings)}
    assert findings["namespace ml-training"].level == OK
    refused = findings["namespace not-prepared"]
    assert refused.level == ERROR and "HTTP 403" in refused.message
    assert "make render" in refused.fix
