"""ClusterAddonsOperator end to end against a Kubernetes API on loopback.

The ephemeral cluster is an EKS cluster on a moto server whose endpoint is a
``tests/fixtures/fake_kube_api.py`` stand-in (discovery, server-side apply as create-or-replace;
no admission, no controllers). The operator resolves the cluster through the EKS API, signs its
token with the Airflow AWS connection, reads the account from STS, and applies the pipeline's
namespaces, IRSA service accounts, RBAC and cluster autoscaler there, twice (idempotent); on a
serving cluster with the ingress on, the AWS Load Balancer Controller too, its webhook
certificate made on the first run and read back and kept on the second.

Stubbed: the EKS access-entry grant held while add-ons apply (``cluster_admin_while``), whose
API moto does not implement (``tests/unit/test_access_entries.py`` covers it with botocore's
Stubber). Not proved here: that a real API server accepts the objects (the schema tests and
the real control plane tests do that).

Kept beside the real control plane and node tiers (``tests/k8s``) for what only it can show: the
cluster reached through the EKS API (a moto server's endpoint and CA) with a bearer token signed
by the Airflow AWS connection. A real API server would need EKS's token webhook
(aws-iam-authenticator) to accept that token, which is not built or run here; the stand-in records it.
"""

from __future__ import annotations

import pytest
from fixtures.fake_kube_api import FakeKubeApi
from fixtures.moto_eks import REGION, create_cluster, inference_group, train_group
from test_cluster_routing import STORE, _context

EPHEMERAL = "addons-ephemeral"  # a cluster of its own on the session's moto server


@pytest.fixture(scope="module")
def ephemeral(moto_server: str):
    api = FakeKubeApi(EPHEMERAL).start()
    create_cluster(EPHEMERAL, train_group(max_size=2), server=api.url)
    yield api
    api.stop()


@pytest.fixture
def aws_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "EKSML_PROFILE": "aws",
        "EKSML_STORE_URI": STORE,
        "EKSML_CLUSTER_NAME": "shared-eks",
        "EKSML_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def no_access_entry_api(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the access grant instead of calling the access-entry API moto lacks."""
    import contextlib

    import eksml.cluster.eks as eks

    granted: list[str] = []

    @contextlib.contextmanager
    def held(cluster, region, principal, aws_conn_id, log=print, *, creation_grant=False):
        granted.append(f"{cluster}:{principal}")
        yield

    monkeypatch.setattr(eks, "cluster_admin_while", held)
    return granted


def test_addons_operator_prepares_the_runs_cluster_idempotently(ephemeral, aws_settings, no_access_entry_api) -> None:
    from eksml.cluster.operators import ClusterAddonsOperator

    operator = ClusterAddonsOperator(
        task_id="prepare_cluster", cluster_name=EPHEMERAL, cluster_role="training", cluster_mode="ephemeral"
    )
    first = operator.execute(_context())
    assert no_access_entry_api and no_access_entry_api[0].startswith(f"{EPHEMERAL}:arn:aws:")
    kinds = {ref.split("/", 1)[0] for ref in first["applied"]}
    assert {
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Deployment",
        "DaemonSet",
        "CustomResourceDefinition",
    } <= kinds  # the pipeline's objects and the vendored add-ons
    assert any(o["metadata"]["name"] == "mpijobs.kubeflow.org" for o in ephemeral.items("customresourcedefinitions"))
    namespaces = {o["metadata"]["name"] for o in ephemeral.items("namespaces")}
    assert "ml-training" in namespaces
    (training_sa,) = [
        o for o in ephemeral.items("serviceaccounts", "ml-training") if o["metadata"]["name"] == "training"
    ]
    role_arn = training_sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert role_arn.startswith("arn:aws:iam::123456789012:role/")  # the account STS answered
    assert any(o["metadata"]["name"] == "cluster-autoscaler" for o in ephemeral.items("deployments", "kube-system"))
    count = sum(len(objs) for objs in ephemeral.objects.values())
    again = operator.execute(_context())
    assert again["applied"] == first["applied"]
    assert sum(len(objs) for objs in ephemeral.objects.values()) == count  # replaced, not duplicated
    patches = [r for r in ephemeral.requests if r.method == "PATCH"]
    assert len(patches) == 2 * len(first["applied"])
    assert all(r.token and r.token.startswith("k8s-aws-v1.") for r in patches)


def test_existing_cluster_mode_touches_nothing(ephemeral, aws_settings) -> None:
    from eksml.cluster.operators import ClusterAddonsOperator

    ephemeral.requests.clear()
    result = ClusterAddonsOperator(
        task_id="prepare_cluster", cluster_name=EPHEMERAL, cluster_role="training", cluster_mode="existing"
    ).execute(_context())
    assert result["applied"] == [] and ephemeral.requests == []


SERVING = "addons-serving"
VPC = "vpc-0a1b2c3d4e5f60718"


@pytest.fixture(scope="module")
def serving(moto_server: str):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.eks.models import eks_backends

    api = FakeKubeApi(SERVING).start()
    create_cluster(SERVING, inference_group(), server=api.url)
    eks_backends[DEFAULT_ACCOUNT_ID][REGION].clusters[SERVING].resources_vpc_config["vpcId"] = VPC
    yield api
    api.stop()


def test_the_load_balancer_controller_keeps_its_webhook_certificate_across_runs(
    serving, aws_settings, no_access_entry_api, monkeypatch
) -> None:
    from eksml.cluster.operators import ClusterAddonsOperator

    monkeypatch.setenv("EKSML_INGRESS", "true")
    monkeypatch.setenv("EKSML_INGRESS_TLS", "false")
    operator = ClusterAddonsOperator(
        task_id="prepare_inference", cluster_name=SERVING, cluster_role="inference", cluster_mode="ephemeral"
    )
    first = operator.execute(_context())
    assert first["applied"][-2:] == [
        "MutatingWebhookConfiguration/aws-load-balancer-webhook",
        "ValidatingWebhookConfiguration/aws-load-balancer-webhook",
    ]
    assert first["applied"].index("IngressClassParams/alb") < first["applied"].index(
        "MutatingWebhookConfiguration/aws-load-balancer-webhook"
    )  # admitted before the webhooks that need the controller
    (secret,) = serving.items("secrets", "kube-system")
    (deployment,) = [
        o
        for o in serving.items("deployments", "kube-system")
        if o["metadata"]["name"] == "aws-load-balancer-controller"
    ]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--cluster-name={SERVING}" in args and f"--aws-vpc-id={VPC}" in args and f"--aws-region={REGION}" in args
    bundles = {
        hook["clientConfig"]["caBundle"]
        for plural in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations")
        for config in serving.items(plural)
        for hook in config["webhooks"]
    }
    assert bundles == {secret["data"]["ca.crt"]}

    again = operator.execute(_context())
    assert again["applied"] == first["applied"]
    (kept,) = serving.items("secrets", "kube-system")
    assert kept["data"] == secret["data"]  # read back, not rotated
    reads = [r for r in serving.requests if r.method == "GET" and r.path.endswith("/secrets/aws-load-balancer-tls")]
    assert len(reads) == 2  # once per run, before the apply
