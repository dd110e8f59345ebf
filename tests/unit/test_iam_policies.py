"""The rendered policies, evaluated with their ``Condition`` blocks (``fixtures.iam_eval``).

Beyond the S3 calls the enforced-IAM integration test replays through real clients: the calls
no emulator here serves with IAM (eksctl's CloudFormation, EC2, IAM and EKS calls; the pipeline's
EKS access-entry calls; the KMS calls S3 makes for an SSE-KMS bucket), each as the action,
resource and condition keys the Service Authorization Reference gives it. Out-of-scope calls
must be refused. What this does not prove: that eksctl makes no call beyond
``EKSCTL_CALLS`` (taken from its documented minimum policies and the ClusterConfig we render).
"""

from __future__ import annotations

import pytest
from fixtures.iam_eval import Request, evaluate, kms_authorizations, s3_authorizations

from eksml.cluster import iam
from eksml.cluster.lifecycle_iam import lifecycle_boundary, lifecycle_calls, lifecycle_policy

REGION, ACCOUNT, CLUSTER = "us-west-2", "123456789012", "eksml"
STORE = "s3://eksml-store/eksml"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/eksml-sagemaker"


def _pipeline(**kw) -> dict:
    return iam.pipeline_policy(
        STORE, "fashion-mnist", REGION, sagemaker_role_arn=ROLE, cluster_name=CLUSTER, account_id=ACCOUNT, **kw
    )


def _policies(kms: str = "") -> dict[str, dict]:
    return {
        "training": iam.training_policy(STORE, "fashion-mnist", REGION, kms_key_arn=kms),
        "inference": iam.inference_policy(STORE, "fashion-mnist", REGION, kms_key_arn=kms),
        "sagemaker": iam.sagemaker_execution_policy(
            STORE, "fashion-mnist", REGION, account_id=ACCOUNT, kms_key_arn=kms
        ),
        "pipeline": _pipeline(kms_key_arn=kms),
    }


def _s3(method: str, path: str, query: str = "") -> Request:
    return s3_authorizations(method, path, query, {})[0]


@pytest.mark.parametrize("identity", ["training", "inference", "sagemaker", "pipeline"])
def test_head_bucket_and_missing_keys_are_allowed_but_foreign_prefixes_are_not(identity):
    doc = _policies()[identity]
    assert evaluate([doc], _s3("HEAD", "/eksml-store")).allowed  # HeadBucket, missing-key 404
    for prefix in ("", "eksml/", "other-deployment/", "eksml/staging/other-model/"):
        assert not evaluate([doc], _s3("GET", "/eksml-store", f"list-type=2&prefix={prefix}")).allowed, prefix
    assert not evaluate([doc], _s3("HEAD", "/another-team-bucket")).allowed


def test_only_the_pipeline_reads_the_bucket_location_and_encryption():
    for identity, doc in _policies().items():
        for sub in ("location=", "encryption="):
            assert evaluate([doc], _s3("GET", "/eksml-store", sub)).allowed is (identity == "pipeline")


def test_a_customer_managed_key_is_granted_only_through_s3_and_only_when_set():
    via = {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}
    get = s3_authorizations("GET", "/eksml-store/eksml/models/fashion-mnist/v/metrics.json", "", {})
    put = s3_authorizations("PUT", "/eksml-store/eksml/staging/fashion-mnist/v/metrics.json", "", {})
    for identity, doc in _policies(KEY).items():
        assert all(evaluate([doc], r).allowed for r in kms_authorizations(get, KEY, REGION)), identity
        assert not evaluate([doc], Request("kms:Decrypt", KEY)).allowed  # straight to KMS, not via S3
        other = KEY.replace("1234abcd", "99999999")
        assert not evaluate([doc], Request("kms:Decrypt", other, via)).allowed
    training, inference = _policies(KEY)["training"], _policies(KEY)["inference"]
    assert all(evaluate([training], r).allowed for r in kms_authorizations(put, KEY, REGION))
    assert not evaluate([inference], Request("kms:GenerateDataKey", KEY, via)).allowed  # reads only
    # without the setting, a customer-managed key refuses every read (the gap preflight reports)
    plain = _policies()["training"]
    assert not evaluate([plain], kms_authorizations(get, KEY, REGION)[0]).allowed


def test_the_pipeline_may_make_itself_admin_of_the_projects_clusters_only():
    doc = _pipeline()
    admin = {"eks:policyArn": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"}

    def entry(cluster: str) -> str:
        return f"arn:aws:eks:{REGION}:{ACCOUNT}:access-entry/{cluster}/role/{ACCOUNT}/eksml-pipeline/uuid"

    for cluster in (CLUSTER, f"{CLUSTER}-training", f"{CLUSTER}-run-0123456789"):
        assert evaluate([doc], Request("eks:AssociateAccessPolicy", entry(cluster), admin)).allowed, cluster
        assert evaluate([doc], Request("eks:ListAssociatedAccessPolicies", entry(cluster))).allowed
    for cluster in ("payments-prod", "eksmlother"):
        assert not evaluate([doc], Request("eks:AssociateAccessPolicy", entry(cluster), admin)).allowed, cluster
    other_policy = {"eks:policyArn": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminPolicy"}
    assert not evaluate([doc], Request("eks:AssociateAccessPolicy", entry(CLUSTER), other_policy)).allowed
    assert not evaluate(
        [doc], Request("eks:DescribeCluster", f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/payments")
    ).allowed


def test_the_pipeline_holds_none_of_eksctls_write_permissions():
    doc = _pipeline()
    writes = [
        (a, r, ctx)
        for a, r, ctx in lifecycle_calls(CLUSTER, REGION, ACCOUNT)
        if not a.split(":")[1].startswith(("Describe", "List", "Get"))
    ]
    assert len(writes) > 20
    assert [(a, r) for a, r, ctx in writes if evaluate([doc], Request(a, r, ctx)).allowed] == []


ACCOUNTS = ("training", "inference")


def _lifecycle(request: Request):
    return evaluate(
        [lifecycle_policy(CLUSTER, REGION, service_accounts=ACCOUNTS, account_id=ACCOUNT)],
        request,
        boundary=lifecycle_boundary(CLUSTER, REGION, service_accounts=ACCOUNTS, account_id=ACCOUNT),
    )


def test_every_eksctl_call_is_allowed_to_the_lifecycle_identity():
    refused = [
        f"{a} on {r}: {d.decision}"
        for a, r, ctx in lifecycle_calls(CLUSTER, REGION, ACCOUNT)
        if not (d := _lifecycle(Request(a, r, ctx))).allowed
    ]
    assert refused == []


@pytest.mark.parametrize(
    ("action", "resource", "context"),
    [
        ("iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/admin-escape", {}),
        # roles named after the project but not made by eksctl: Airflow's own, the lifecycle one
        ("iam:PutRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/{CLUSTER}-pipeline", {}),
        ("iam:AttachRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/{CLUSTER}-lifecycle", {}),
        ("iam:UpdateAssumeRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/{CLUSTER}-pipeline", {}),
        ("iam:PutRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/OrganizationAccountAccessRole", {}),
        (
            "iam:AttachRolePolicy",
            f"arn:aws:iam::{ACCOUNT}:role/{CLUSTER}-training",
            {"iam:PolicyARN": "arn:aws:iam::aws:policy/AdministratorAccess"},
        ),
        (
            "iam:PassRole",
            f"arn:aws:iam::{ACCOUNT}:role/{CLUSTER}-training",
            {"iam:PassedToService": "lambda.amazonaws.com"},
        ),
        ("iam:CreateUser", f"arn:aws:iam::{ACCOUNT}:user/backdoor", {}),
        ("iam:CreateAccessKey", f"arn:aws:iam::{ACCOUNT}:user/operator", {}),
        ("iam:DeleteRolePermissionsBoundary", f"arn:aws:iam::{ACCOUNT}:role/eksml-lifecycle", {}),
        ("cloudformation:DeleteStack", f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/payments-db/uuid", {}),
        ("eks:DeleteCluster", f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/payments-prod", {}),
        (
            "eks:AssociateAccessPolicy",
            f"arn:aws:eks:{REGION}:{ACCOUNT}:access-entry/payments-prod/role/{ACCOUNT}/x/uuid",
            {},
        ),
        (
            "ec2:TerminateInstances",
            f"arn:aws:ec2:eu-west-1:{ACCOUNT}:instance/i-1",
            {"aws:RequestedRegion": "eu-west-1"},
        ),
        ("s3:GetObject", "arn:aws:s3:::eksml-store/eksml/models/fashion-mnist/champion.json", {}),
        ("sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/{CLUSTER}-training", {}),
    ],
)
def test_the_lifecycle_identity_stays_inside_the_project(action, resource, context):
    requested = {"aws:RequestedRegion": "us-east-1" if action.startswith("iam:") else REGION} | context
    assert not _lifecycle(Request(action, resource, requested)).allowed


def test_the_boundary_caps_an_admin_policy_attached_by_mistake():
    admin = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    boundary = lifecycle_boundary(CLUSTER, REGION, service_accounts=ACCOUNTS, account_id=ACCOUNT)
    for action, resource in (
        ("iam:CreateUser", f"arn:aws:iam::{ACCOUNT}:user/x"),
        ("iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/x"),
        ("s3:GetObject", "arn:aws:s3:::eksml-store/k"),
    ):
        assert not evaluate(
            [admin], Request(action, resource, {"aws:RequestedRegion": REGION}), boundary=boundary
        ).allowed


def test_the_irsa_roles_eksctl_creates_grant_the_store_key():
    from eksml.cluster.request import ClusterRequest, build_cluster_configs
    from eksml.settings import Settings

    (cfg,) = build_cluster_configs(ClusterRequest.from_settings(Settings(store_uri=STORE, store_kms_key_arn=KEY)))
    accounts = {
        f"{a['metadata']['namespace']}/{a['metadata']['name']}": a for a in cfg.to_dict()["iam"]["serviceAccounts"]
    }
    for account in ("ml-training/training", "ml-serving/inference"):
        sids = {st["Sid"]: st for st in accounts[account]["attachPolicy"]["Statement"]}
        assert sids["StoreKmsKeyThroughS3"]["Resource"] == KEY, account
