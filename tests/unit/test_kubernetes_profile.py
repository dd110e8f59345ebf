"""The kubernetes profile (a cluster the user already has, any S3-compatible store): its settings
name what they need, and its preflight stops a run before anything starts when the connection or
the store is missing or does not answer; the training DAG then skips every EKS step.

The store is a real moto server; the cluster half against a real API server is in
``tests/k8s/test_k8s_kubernetes_profile.py``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from eksml.pipeline import PreflightError, needs_cluster, validate
from eksml.preflight import ERROR, OK
from eksml.preflight_kubernetes import check_cluster, check_store, kubernetes_preflight, require_reachable
from eksml.settings import Settings, SettingsError, load_settings

STORE = "s3://eksml-k8s-profile/store"


def k8s_settings(**changes: object) -> Settings:
    return Settings(profile="kubernetes", store_uri=STORE, kubernetes_conn_id="my_cluster").replace(**changes)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def conn(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[callable]:
    """``conn(conn_type, server)``: the Airflow connection ``my_cluster`` with a kubeconfig for ``server``."""

    def define(conn_type: str = "kubernetes", server: str = "") -> None:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "c", "cluster": {"server": server}}],
                    "users": [{"name": "u", "user": {"token": "t"}}],
                    "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                    "current-context": "x",
                }
            )
        )
        monkeypatch.setenv(
            "AIRFLOW_CONN_MY_CLUSTER",
            json.dumps({"conn_type": conn_type, "extra": {"kube_config_path": str(kubeconfig)}}),
        )

    yield define


# --- settings -----------------------------------------------------------------------------
def test_the_profile_is_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EKSML_PROFILE", "kubernetes")
    monkeypatch.setenv("EKSML_KUBERNETES_CONN_ID", "kind_cluster")
    monkeypatch.setenv("EKSML_STORE_URI", STORE)
    settings = load_settings()
    assert (settings.profile, settings.kubernetes_conn_id, settings.store_uri) == ("kubernetes", "kind_cluster", STORE)


def test_the_profile_needs_a_kubernetes_connection() -> None:
    with pytest.raises(SettingsError, match="kubernetes_conn_id.*EKSML_KUBERNETES_CONN_ID"):
        Settings(profile="kubernetes", store_uri=STORE)


def test_the_profile_needs_an_s3_store() -> None:
    with pytest.raises(SettingsError, match="s3:// store_uri.*endpoint_url"):
        Settings(profile="kubernetes", kubernetes_conn_id="my_cluster")


def test_a_pod_store_endpoint_needs_the_keys_secret() -> None:
    with pytest.raises(SettingsError, match="pod_store_secret is empty"):
        k8s_settings(pod_store_endpoint_url="http://10.0.0.5:9000")
    assert k8s_settings(pod_store_endpoint_url="http://10.0.0.5:9000", pod_store_secret="store-keys")


def test_eks_only_work_is_refused_with_why() -> None:
    with pytest.raises(SettingsError, match="aws profile.*connection 'my_cluster' reaches, never made here"):
        k8s_settings().require_aws("the eks_cluster DAG")


def test_the_training_dag_skips_every_eks_step() -> None:
    params = {"trainer": "kubernetes", "cluster": "existing"}
    assert not needs_cluster({"profile": "kubernetes", "params": params})
    assert needs_cluster({"profile": "aws", "params": params})


# --- the cluster ----------------------------------------------------------------------------
def test_a_missing_connection_is_named_with_how_to_define_it() -> None:
    findings = check_cluster(k8s_settings())
    assert [f.level for f in findings] == [ERROR]
    assert "'my_cluster' not found" in findings[0].message
    assert "AIRFLOW_CONN_MY_CLUSTER" in findings[0].fix


def test_a_connection_of_another_type_is_refused(conn) -> None:
    conn("aws")
    findings = check_cluster(k8s_settings())
    assert [f.level for f in findings] == [ERROR]
    assert "type 'aws', not kubernetes" in findings[0].message


def test_an_api_server_that_does_not_answer_is_named(conn) -> None:
    server = f"http://127.0.0.1:{closed_port()}"
    conn("kubernetes", server)
    findings = check_cluster(k8s_settings())
    assert [f.level for f in findings] == [OK, ERROR]
    assert server in findings[1].message and "did not answer" in findings[1].message


# --- the store -------------------------------------------------------------------------------
def test_the_store_answers_through_the_aws_connection(moto_bucket) -> None:
    moto_bucket("eksml-k8s-profile")
    assert [f.level for f in check_store(k8s_settings())] == [OK]


def test_a_missing_bucket_is_named(moto_server: str) -> None:
    findings = check_store(k8s_settings(store_uri="s3://no-such-bucket-here/store"))
    assert [f.level for f in findings] == [ERROR]
    assert "'no-such-bucket-here'" in findings[0].message and moto_server in findings[0].message


def test_a_store_endpoint_that_does_not_answer_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_STORE_OFFLINE",
        json.dumps({"conn_type": "aws", "login": "k", "password": "s", "extra": {"endpoint_url": endpoint}}),
    )
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    findings = check_store(k8s_settings(aws_conn_id="store_offline"))
    assert [f.level for f in findings] == [ERROR]
    assert endpoint in findings[0].message and "endpoint_url" in findings[0].fix


# --- before anything starts -------------------------------------------------------------------
def test_the_first_task_stops_before_any_copy(monkeypatch: pytest.MonkeyPatch, moto_bucket, moto_client) -> None:
    """validate() in the kubernetes profile: no connection -> PreflightError naming it; nothing
    was written to the store."""
    moto_bucket("eksml-k8s-profile")
    for name, value in {"PROFILE": "kubernetes", "KUBERNETES_CONN_ID": "my_cluster", "STORE_URI": STORE}.items():
        monkeypatch.setenv(f"EKSML_{name}", value)
    with pytest.raises(PreflightError, match="(?s)cluster or the store would reject.*'my_cluster' not found"):
        validate({"trainer": "kubernetes", "epochs": 1})
    assert "Contents" not in moto_client("s3").list_objects_v2(Bucket="eksml-k8s-profile")


def test_sagemaker_is_refused_in_the_kubernetes_profile(monkeypatch: pytest.MonkeyPatch, moto_bucket) -> None:
    from eksml.params import validate_training_params
    from eksml.preflight import run_preflight

    moto_bucket("eksml-k8s-profile")
    report = run_preflight(k8s_settings(), validate_training_params({"trainer": "sagemaker"}))
    assert any(f.check == "trainer" and f.level == ERROR for f in report.findings)


def test_the_deployment_dag_checks_first(moto_bucket) -> None:
    moto_bucket("eksml-k8s-profile")
    assert kubernetes_preflight(k8s_settings()).errors  # no connection my_cluster
    with pytest.raises(PreflightError, match="'my_cluster' not found"):
        require_reachable(k8s_settings())
    require_reachable(Settings())  # the local profile: nothing to check


# --- placement on nodes without role labels ---------------------------------------------------
def test_node_roles_off_places_pods_anywhere() -> None:
    """A one-node cluster (kind, minikube, k3d) has no node groups: with ``node_roles`` off the
    training pod and the inference Deployment carry no selector or affinity
    (on, each names its group, as on EKS)."""
    from fixtures.specs import small_training_spec

    from eksml.kubernetes.operators import render_training_pod
    from eksml.serving.manifests import render_inference_objects
    from eksml.specs import coerce_spec

    spec = coerce_spec(small_training_spec(STORE, gpus=0))
    model = f"{STORE}/models/fashion-mnist/v1"
    for node_roles, selector in ((True, {"role": "train"}), (False, None)):
        pod = render_training_pod(spec, k8s_settings(node_roles=node_roles))
        assert (pod["spec"].get("nodeSelector") or None) == selector
        deployment = render_inference_objects(k8s_settings(node_roles=node_roles), model, "v1")[0]
        assert bool(deployment["spec"]["template"]["spec"]["nodeSelector"]) is node_roles
