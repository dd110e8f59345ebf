"""Preflight against a moto server (S3, ECR, STS) and recorded API answers where moto has no
implementation (IAM's policy simulator, EC2 and SageMaker service quotas: botocore's Stubber,
answers shaped like the API reference, requests checked against the service model)."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from eksml import preflight
from eksml.cluster import iam
from eksml.params import validate_training_params
from eksml.settings import Settings

REGION = "us-west-2"
ACCOUNT = "123456789012"  # moto's account
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/eksml"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/eksml-sagemaker"


# The digest each pushed image got from the registry (ECR computes it from the manifest), which
# is what a user pins after `docker push`.
PUSHED: dict[str, str] = {}


def _manifest(name: str) -> str:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "annotations": {"image": name},  # one digest per image
        }
    )


@pytest.fixture(scope="module")
def account(moto_bucket, moto_client):
    ecr = moto_client("ecr", REGION)
    for bucket, region in (("preflight-store", REGION), ("preflight-elsewhere", "eu-west-1")):
        moto_bucket(bucket, region)
    for name in ("tf-fashion-mnist", "inference"):  # mxnet-horovod is not pushed
        ecr.create_repository(repositoryName=f"eksml/{name}")
        pushed = ecr.put_image(repositoryName=f"eksml/{name}", imageTag="0.2.0", imageManifest=_manifest(name))
        PUSHED[name] = pushed["image"]["imageId"]["imageDigest"]
    return moto_client


def _settings(**changes) -> Settings:
    return Settings(
        **{
            "profile": "aws",
            "store_uri": "s3://preflight-store/ml",
            "region": REGION,
            "image_registry": REGISTRY,
            "image_tag": "0.2.0",
            "image_digests": tuple(
                f"{n}@{PUSHED.get(n, 'sha256:' + '0' * 64)}" for n in ("tf-fashion-mnist", "mxnet-horovod", "inference")
            ),
            **changes,
        }
    )


class Recorded:
    """IAM and Service Quotas clients whose answers are queued per test (botocore Stubber)."""

    def __init__(self) -> None:
        self.iam = boto3.client("iam", region_name=REGION, aws_access_key_id="k", aws_secret_access_key="s")
        self.quotas = boto3.client(
            "service-quotas", region_name=REGION, aws_access_key_id="k", aws_secret_access_key="s"
        )
        self.iam_stub, self.quota_stub = Stubber(self.iam), Stubber(self.quotas)

    def simulate(self, principal: str, policy: dict, deny: set[str] = frozenset()) -> None:
        for action, resource, context in preflight.probes(policy):
            decision = "implicitDeny" if action in deny else "allowed"
            self.iam_stub.add_response(
                "simulate_principal_policy",
                {
                    "EvaluationResults": [
                        {"EvalActionName": action, "EvalResourceName": resource, "EvalDecision": decision}
                    ],
                    "IsTruncated": False,
                },
                {
                    "PolicySourceArn": principal,
                    "ActionNames": [action],
                    "ResourceArns": [resource],
                    "ContextEntries": context,
                },
            )

    def no_such_role(self, principal: str) -> None:
        self.iam_stub.add_client_error(
            "simulate_principal_policy", "NoSuchEntity", http_status_code=404, expected_params=None
        )

    def factory(self, moto_client):
        def make(service: str):
            return {"iam": self.iam, "service-quotas": self.quotas}.get(service) or moto_client(service)

        self.iam_stub.activate()
        self.quota_stub.activate()
        return make


def _pipeline_doc(settings: Settings, role: str | None = None) -> dict:
    return iam.pipeline_policy(
        settings.store_uri,
        settings.model_name,
        REGION,
        sagemaker_role_arn=role or f"arn:aws:iam::{ACCOUNT}:role/preflight-probe",
        cluster_name=settings.cluster_name,
        account_id=ACCOUNT,
    )


MOTO_CALLER = f"arn:aws:sts::{ACCOUNT}:user/moto"


def test_a_ready_account_passes_with_a_cost_estimate(account):
    # Ready includes saying how Airflow's workers reach the private API (here: from these addresses).
    settings = _settings(api_public_access=True, api_public_cidrs=("203.0.113.0/24",))
    rec = Recorded()
    rec.simulate(MOTO_CALLER, _pipeline_doc(settings))
    rec.simulate(
        f"arn:aws:iam::{ACCOUNT}:role/eksml-{REGION}-training",
        iam.training_policy(settings.store_uri, settings.model_name, REGION),
    )
    rec.quota_stub.add_response(
        "get_service_quota",
        {"Quota": {"QuotaCode": "L-DB2E81BA", "Value": 64.0}},
        {"ServiceCode": "ec2", "QuotaCode": "L-DB2E81BA"},
    )
    report = preflight.run_preflight(settings, validate_training_params({}), clients=rec.factory(account), hours=2)
    assert report.errors == [], report.text()
    assert any("vCPUs >= 4" in f.message for f in report.findings)  # one g5.xlarge
    assert "1 GPU node(s) g5.xlarge x 2 h x $1.006/h = $2.01" in report.text()
    assert "2026-11-29" in report.estimate[0]
    rec.iam_stub.assert_no_pending_responses()


def test_each_problem_is_found_with_its_fix(account):
    settings = _settings(store_uri="s3://preflight-elsewhere/ml", kubernetes_version="1.31", image_digests=())
    rec = Recorded()
    rec.simulate(MOTO_CALLER, _pipeline_doc(settings), deny={"s3:PutObject", "sagemaker:CreateTrainingJob"})
    rec.no_such_role("training")
    rec.quota_stub.add_response(
        "get_service_quota",
        {"Quota": {"QuotaCode": "L-DB2E81BA", "Value": 0.0}},
        {"ServiceCode": "ec2", "QuotaCode": "L-DB2E81BA"},
    )
    params = validate_training_params({"framework": "both", "workers": 2})
    report = preflight.run_preflight(settings, params, clients=rec.factory(account))
    errors = {f.check: f for f in report.errors}
    assert "is in eu-west-1" in errors["bucket"].message and "EKSML_REGION=eu-west-1" in errors["bucket"].fix
    assert "mxnet-horovod:0.2.0 not found" in errors["images"].message and "docker push" in errors["images"].fix
    assert "s3:PutObject" in errors["permissions: pipeline"].message
    assert "python -m eksml.cluster.eksctl iam pipeline" in errors["permissions: pipeline"].fix
    assert "does not exist" in errors["permissions: training"].message
    assert "left EKS extended support on 2026-11-26" in errors["kubernetes version"].message
    assert "EKSML_IMAGE_DIGESTS=" in errors["image digests"].fix
    assert "is 0 vCPUs; 2 x g5.xlarge need 8" in errors["quota: ec2"].message
    assert "--quota-code L-DB2E81BA --desired-value 8" in errors["quota: ec2"].fix


def test_images_are_looked_up_by_the_pinned_digest(account):
    """A run pulls the pinned digest, so that is what must exist: a tag that now names another
    image does not pass for it, and the fixes are commands that work (``docker build -t`` takes no
    digest)."""
    stale = "sha256:" + "1" * 64  # pinned before the tag was pushed again
    settings = _settings(image_digests=(f"inference@{stale}", f"mxnet-horovod@sha256:{'2' * 64}"))
    ecr = account("ecr", REGION)
    findings = preflight.check_images(ecr, settings, ["inference", "mxnet-horovod"])
    inference, horovod = findings
    assert inference.level == preflight.ERROR, inference
    assert f"inference@{stale} not found" in inference.message
    assert PUSHED["inference"] in inference.message  # what the tag is now
    assert f"inference@{PUSHED['inference']}" in inference.fix
    assert horovod.level == preflight.ERROR and "mxnet-horovod:0.2.0@sha256:222" in horovod.message
    build = f"docker build -f images/mxnet-horovod/Dockerfile -t {REGISTRY}/mxnet-horovod:0.2.0 images"
    assert build in horovod.fix and f"docker push {REGISTRY}/mxnet-horovod:0.2.0," in horovod.fix
    assert "EKSML_IMAGE_DIGESTS" in horovod.fix
    pinned = _settings()
    (ok,) = preflight.check_images(ecr, pinned, ["inference"])
    assert ok.level == preflight.OK and ok.message == f"{pinned.image('inference')} exists"


def test_sagemaker_runs_check_the_role_and_the_training_quota(account):
    rec = Recorded()
    settings = _settings()
    rec.simulate(MOTO_CALLER, _pipeline_doc(settings))
    params = validate_training_params(
        {"trainer": "sagemaker", "sagemaker_instance_type": "ml.g5.xlarge", "sagemaker_use_spot": False}
    )
    rec.quota_stub.add_response(
        "list_service_quotas",
        {"Quotas": [{"QuotaName": "ml.g5.xlarge for training job usage", "QuotaCode": "L-1234ABCD", "Value": 0.0}]},
        {"ServiceCode": "sagemaker"},
    )
    report = preflight.run_preflight(settings, params, clients=rec.factory(account))
    errors = {f.check: f for f in report.errors}
    assert "sagemaker_role_arn is not set" in errors["sagemaker role"].message
    assert "'ml.g5.xlarge for training job usage' (L-1234ABCD) is 0" in errors["quota: sagemaker"].message
    assert "1 SageMaker job(s) on ml.g5.xlarge x 1 h x $1.408/h" in report.text()


def test_the_first_task_of_an_aws_run_stops_on_preflight_errors(account, monkeypatch, dataset_dir):
    from eksml.pipeline import PreflightError, validate

    monkeypatch.setenv("EKSML_PROFILE", "aws")
    monkeypatch.setenv("EKSML_STORE_URI", "s3://no-such-bucket-anywhere/ml")
    monkeypatch.setenv("EKSML_REGION", REGION)
    with pytest.raises(PreflightError, match="no-such-bucket-anywhere cannot be reached"):
        validate({"data_uri": str(dataset_dir)})


KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.mark.parametrize(
    ("rule", "setting", "level", "says"),
    [
        (None, "", preflight.OK, "S3-managed keys"),
        ({"SSEAlgorithm": "AES256"}, "", preflight.OK, "S3-managed keys"),
        ({"SSEAlgorithm": "aws:kms"}, "", preflight.OK, "AWS managed key aws/s3"),
        ({"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/aws/s3"}, "", preflight.OK, "aws/s3"),
        ({"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY}, "", preflight.ERROR, "customer-managed KMS key"),
        ({"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY}, KEY, preflight.OK, "granted through S3"),
        (
            {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "1234abcd-12ab-34cd-56ef-1234567890ab"},
            KEY,
            preflight.OK,
            "granted through S3",
        ),
        (
            {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY.replace("1234abcd", "99999999")},
            KEY,
            preflight.ERROR,
            "the policies grant",
        ),
    ],
)
def test_bucket_encryption_finding(moto_bucket, moto_client, rule, setting, level, says):
    bucket = moto_bucket("preflight-encrypted")
    s3 = moto_client("s3")
    if rule is None:
        s3.delete_bucket_encryption(Bucket=bucket)
    else:
        s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": rule}]},
        )
    (finding,) = preflight.check_bucket_encryption(
        s3, _settings(store_uri=f"s3://{bucket}/ml", store_kms_key_arn=setting)
    )
    assert finding.level == level and says in finding.message, finding
    if level == preflight.ERROR:
        assert "EKSML_STORE_KMS_KEY_ARN" in finding.fix


def test_ephemeral_runs_simulate_the_lifecycle_identity(account):
    from eksml.cluster.lifecycle_iam import lifecycle_calls

    settings = _settings()
    rec = Recorded()
    rec.simulate(MOTO_CALLER, _pipeline_doc(settings))
    lifecycle_role = f"arn:aws:iam::{ACCOUNT}:role/eksml-lifecycle"
    for action, resource, context in lifecycle_calls(settings.cluster_name, REGION, ACCOUNT):
        entries = [
            {"ContextKeyName": k, "ContextKeyValues": [v], "ContextKeyType": "string"} for k, v in context.items()
        ]
        decision = "implicitDeny" if action == "iam:CreateOpenIDConnectProvider" else "allowed"
        rec.iam_stub.add_response(
            "simulate_principal_policy",
            {"EvaluationResults": [{"EvalActionName": action, "EvalResourceName": resource, "EvalDecision": decision}]},
            {
                "PolicySourceArn": lifecycle_role,
                "ActionNames": [action],
                "ResourceArns": [resource],
                "ContextEntries": entries,
            },
        )
    rec.no_such_role("training")
    rec.quota_stub.add_response(
        "get_service_quota",
        {"Quota": {"QuotaCode": "L-417A185B", "Value": 64.0}},
        {"ServiceCode": "ec2", "QuotaCode": "L-417A185B"},
    )
    sts = boto3.client("sts", region_name=REGION, aws_access_key_id="k", aws_secret_access_key="s")
    sts_stub = Stubber(sts)
    sts_stub.add_response(
        "get_caller_identity",
        {"Arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/eksml-lifecycle/eksctl", "Account": ACCOUNT, "UserId": "AROA:x"},
    )
    sts_stub.activate()
    params = validate_training_params({"cluster": "ephemeral"})
    report = preflight.run_preflight(
        _settings(lifecycle_aws_conn_id="aws_lifecycle"),
        params,
        clients=rec.factory(account),
        lifecycle_clients=lambda service: sts,
    )
    errors = {f.check: f for f in report.errors}
    assert "iam:CreateOpenIDConnectProvider" in errors["permissions: lifecycle"].message
    assert lifecycle_role in errors["permissions: lifecycle"].message
    assert "python -m eksml.cluster.eksctl iam lifecycle" in errors["permissions: lifecycle"].fix
    rec.iam_stub.assert_no_pending_responses()


def test_every_probe_satisfies_the_statement_it_probes():
    """What preflight asks the simulator must be allowed by the very policy it renders (the
    context fills each condition), else a correct account reads as a broken one."""
    from fixtures.iam_eval import Request, evaluate

    doc = iam.pipeline_policy(
        "s3://b-1/ml", "fashion-mnist", REGION, sagemaker_role_arn=ROLE, cluster_name="eksml", account_id=ACCOUNT
    )
    refused = []
    for action, resource, context in preflight.probes(doc):
        request = Request(action, resource, {c["ContextKeyName"]: c["ContextKeyValues"][0] for c in context})
        if not evaluate([doc], request).allowed:
            refused.append(str(request))
    assert refused == []


def test_an_ephemeral_run_checks_every_quota_its_cluster_draws_on(account):
    """A run that creates its cluster needs the standard on-demand vCPUs of ng-inference too (issue 22,
    fault 3: only the GPU quota was checked, so a fresh account's 5 vCPUs failed the node group)."""
    settings = _settings()
    rec = Recorded()
    rec.simulate(MOTO_CALLER, _pipeline_doc(settings))
    for code, value in (("L-DB2E81BA", 64.0), ("L-1216C47A", 5.0), ("L-DB2E81BA", 64.0)):
        rec.quota_stub.add_response(
            "get_service_quota",
            {"Quota": {"QuotaCode": code, "Value": value}},
            {"ServiceCode": "ec2", "QuotaCode": code},
        )
    params = validate_training_params({"cluster": "ephemeral"})
    report = preflight.run_preflight(settings, params, clients=rec.factory(account))
    (error,) = [f for f in report.errors if f.check == "quota: ec2"]
    assert "L-1216C47A" in error.message and "need 8 at their desired sizes" in error.message
    rec.quota_stub.assert_no_pending_responses()
