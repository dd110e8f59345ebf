"""Least-privilege IAM policy documents, rendered from the store layout's access table.

The S3 part of every identity's policy comes from :data:`eksml.layout.ACCESS`, the table the
run planner's locations come from too, so a workload's prefixes and its permissions cannot
drift apart. Everything is scoped to the bucket and prefix of ``Settings.store_uri``, so a role
never touches another deployment's objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from eksml.errors import InvalidInput
from eksml.layout import BUCKET_NAME, OBJECT_ACTIONS, Area, Identity, Op, area_key_prefix, grants

POLICY_VERSION = "2012-10-17"


class StoreUriError(InvalidInput):
    """The store URI cannot scope an IAM policy."""


@dataclass(frozen=True)
class S3Location:
    """Bucket and key prefix (no leading or trailing slash) of an ``s3://`` URI."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        if not uri.startswith("s3://"):
            raise StoreUriError(
                f"IRSA policies need an s3:// store, got {uri!r}: set EKSML_STORE_URI=s3://BUCKET/PREFIX"
            )
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        if not BUCKET_NAME.match(bucket) or ".." in bucket:
            raise StoreUriError(f"invalid S3 bucket name {bucket!r} in {uri!r}")
        return cls(bucket=bucket, prefix=prefix.strip("/"))

    def key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))


def irsa_role_name(cluster: str, region: str, service_account: str) -> str:
    """The IAM role of a cluster's service account. IAM role names are account-global: the region
    keeps the same cluster name in two regions apart."""
    return f"{cluster}-{region}-{service_account}"


def partition_for(region: str) -> str:
    """ARN partition of a region (China and GovCloud have their own)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def _sid(area: Area, ops: frozenset[Op]) -> str:
    return area.value.capitalize() + "".join(op.value.capitalize() for op in Op if op in ops)


def bucket_arn(store_uri: str, region: str) -> str:
    return f"arn:{partition_for(region)}:s3:::{S3Location.parse(store_uri).bucket}"


def s3_statements(
    identity: Identity, store_uri: str, model_name: str, region: str, *, kms_key_arn: str = ""
) -> list[dict[str, Any]]:
    """The S3 statements of ``identity``, rendered from :data:`eksml.layout.ACCESS`.

    Listing is allowed on the bucket only under the prefixes of areas the identity reads (an
    ``s3:prefix`` condition); object actions only under those areas' prefixes. ``s3:ListBucket``
    without any ``s3:prefix`` is allowed too (a ``Null`` condition): IAM authorizes HeadBucket
    with it, and S3 answers a GetObject/HeadObject of a missing key 404 only to a caller that
    has it (403 otherwise, which s3fs raises as PermissionError from ``exists()``). It lets the
    identity list the bucket's key names from the root, never read them; a listing with any
    prefix outside the identity's areas stays refused. With ``kms_key_arn`` (a bucket encrypted
    with a customer-managed key), the KMS calls S3 makes for the identity are allowed on that
    key only, and only through S3.
    """
    loc = S3Location.parse(store_uri)
    arn = bucket_arn(store_uri, region)
    granted = grants(identity)
    readable = [loc.key(area_key_prefix(area, model_name)) for area, ops in granted.items() if Op.READ in ops]
    statements: list[dict[str, Any]] = []
    if readable:
        patterns = [p for prefix in readable for p in (prefix, f"{prefix}/*")]
        statements.append(
            {
                "Sid": "ListOwnPrefixes",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": arn,
                "Condition": {"StringLike": {"s3:prefix": patterns}},
            }
        )
    if granted:
        statements.append(
            {
                "Sid": "HeadBucketAndMissingKeys",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": arn,
                "Condition": {"Null": {"s3:prefix": "true"}},
            }
        )
    for area, ops in granted.items():
        actions = [action for op in Op if op in ops for action in OBJECT_ACTIONS[op]]
        statements.append(
            {
                "Sid": _sid(area, ops),
                "Effect": "Allow",
                "Action": actions,
                "Resource": f"{arn}/{loc.key(area_key_prefix(area, model_name))}/*",
            }
        )
    if kms_key_arn and granted:
        writes = any(Op.WRITE in ops for ops in granted.values())
        statements.append(
            {
                "Sid": "StoreKmsKeyThroughS3",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", *(["kms:GenerateDataKey"] if writes else [])],
                "Resource": kms_key_arn,
                "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
            }
        )
    return statements


def s3_policy(
    identity: Identity, store_uri: str, model_name: str, region: str, *, kms_key_arn: str = ""
) -> dict[str, Any]:
    """A policy document holding only ``identity``'s S3 statements."""
    statements = s3_statements(identity, store_uri, model_name, region, kms_key_arn=kms_key_arn)
    return {"Version": POLICY_VERSION, "Statement": statements}


def training_policy(store_uri: str, model_name: str, region: str, *, kms_key_arn: str = "") -> dict[str, Any]:
    """IRSA policy of the training service account (training, MPI and evaluation pods)."""
    return s3_policy(Identity.TRAINING, store_uri, model_name, region, kms_key_arn=kms_key_arn)


def inference_policy(store_uri: str, model_name: str, region: str, *, kms_key_arn: str = "") -> dict[str, Any]:
    """IRSA policy of the serving service account: read registered models only."""
    return s3_policy(Identity.INFERENCE, store_uri, model_name, region, kms_key_arn=kms_key_arn)


#: Actions SageMaker needs from its execution role beyond the store (pull the image, write logs
#: and metrics); VPC jobs need the network-interface actions too.
SAGEMAKER_SERVICE_ACTIONS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "PullImages",
        (
            "ecr:GetAuthorizationToken",
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer",
            "ecr:BatchCheckLayerAvailability",
        ),
        "*",
    ),
    (
        "JobLogs",
        ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"),
        "arn:{partition}:logs:{region}:{account}:log-group:/aws/sagemaker/*",
    ),
    ("JobMetrics", ("cloudwatch:PutMetricData",), "*"),
)
SAGEMAKER_VPC_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterface",
    "ec2:DeleteNetworkInterfacePermission",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
)

#: Access entries of the project's clusters (never another cluster's in the account).
PROJECT_ACCESS_ENTRIES = (
    "arn:{partition}:eks:{region}:{account}:access-entry/{cluster}/*",
    "arn:{partition}:eks:{region}:{account}:access-entry/{cluster}-*/*",
)

#: Bucket actions of Airflow's identity beyond its areas: preflight's bucket checks
#: (``check_bucket``: GetBucketLocation; ``check_bucket_encryption``: GetEncryptionConfiguration).
PIPELINE_BUCKET_ACTIONS = ("s3:GetBucketLocation", "s3:GetEncryptionConfiguration")

#: What Airflow's identity calls besides the store, and why.
PIPELINE_SERVICE_ACTIONS: tuple[tuple[str, tuple[str, ...], str | tuple[str, ...]], ...] = (
    # the SageMaker training branch
    (
        "SageMakerJobs",
        (
            "sagemaker:CreateTrainingJob",
            "sagemaker:DescribeTrainingJob",
            "sagemaker:StopTrainingJob",
            "sagemaker:AddTags",
            "sagemaker:ListTags",
        ),
        "arn:{partition}:sagemaker:{region}:{account}:*",
    ),
    (
        "SageMakerLogs",
        ("logs:DescribeLogStreams", "logs:GetLogEvents"),
        "arn:{partition}:logs:{region}:{account}:log-group:/aws/sagemaker/*",
    ),
    # a connection per cluster (token signed for DescribeCluster's endpoint), GPU capacity checks;
    # only the project's clusters: <cluster>, <cluster>-training, <cluster>-run-<hash>
    (
        "EksProjectClusters",
        ("eks:DescribeCluster", "eks:DescribeNodegroup", "eks:ListNodegroups"),
        (
            "arn:{partition}:eks:{region}:{account}:cluster/{cluster}",
            "arn:{partition}:eks:{region}:{account}:cluster/{cluster}-*",
            "arn:{partition}:eks:{region}:{account}:nodegroup/{cluster}/*",
            "arn:{partition}:eks:{region}:{account}:nodegroup/{cluster}-*/*",
        ),
    ),
    ("EksListClusters", ("eks:ListClusters",), "*"),  # no resource type (Service Authorization Reference)
    # cluster admin only while the add-ons are applied (eksml.cluster.eks.cluster_admin_while), on the
    # project's clusters only; AssociateAccessPolicy is a statement of its own (policy condition)
    (
        "EksAddonInstallEntries",
        ("eks:ListAssociatedAccessPolicies", "eks:DisassociateAccessPolicy"),
        PROJECT_ACCESS_ENTRIES,
    ),
    ("Autoscaling", ("autoscaling:DescribeAutoScalingGroups",), "*"),
    # preflight
    (
        "Preflight",
        (
            "iam:SimulatePrincipalPolicy",
            "servicequotas:GetServiceQuota",
            "servicequotas:ListServiceQuotas",
            "ecr:DescribeImages",
            "ec2:DescribeInstanceTypeOfferings",
            # the production integrations' prerequisites (eksml.preflight_integrations)
            "ec2:DescribeSubnets",
            "ec2:DescribeRouteTables",
            "acm:DescribeCertificate",
            "cognito-idp:DescribeUserPool",
            "cognito-idp:DescribeUserPoolClient",
            "cognito-idp:DescribeUserPoolDomain",
            "elasticloadbalancing:DescribeLoadBalancers",
        ),
        "*",
    ),
)


def _service_statements(
    table: tuple[tuple[str, tuple[str, ...], str | tuple[str, ...]], ...],
    region: str,
    account: str,
    cluster: str = "",
) -> list[dict[str, Any]]:
    partition = partition_for(region)

    def fill(resource: str) -> str:
        return resource.format(partition=partition, region=region, account=account, cluster=cluster)

    return [
        {
            "Sid": sid,
            "Effect": "Allow",
            "Action": list(actions),
            "Resource": fill(resources) if isinstance(resources, str) else [fill(r) for r in resources],
        }
        for sid, actions, resources in table
    ]


def sagemaker_execution_policy(
    store_uri: str,
    model_name: str,
    region: str,
    *,
    account_id: str | None = None,
    vpc: bool = False,
    kms_key_arn: str = "",
) -> dict[str, Any]:
    """Policy of the SageMaker execution role: its store areas, image pulls, logs (and VPC)."""
    statements = s3_statements(Identity.SAGEMAKER, store_uri, model_name, region, kms_key_arn=kms_key_arn)
    statements += _service_statements(SAGEMAKER_SERVICE_ACTIONS, region, account_id or "*")
    if vpc:
        statements.append(
            {"Sid": "VpcNetworking", "Effect": "Allow", "Action": list(SAGEMAKER_VPC_ACTIONS), "Resource": "*"}
        )
    return {"Version": POLICY_VERSION, "Statement": statements}


def pipeline_policy(
    store_uri: str,
    model_name: str,
    region: str,
    *,
    sagemaker_role_arn: str,
    cluster_name: str,
    account_id: str | None = None,
    kms_key_arn: str = "",
) -> dict[str, Any]:
    """Policy of the identity Airflow signs with: its store areas, SageMaker, EKS reads, preflight.

    Creating and deleting clusters (``cluster=ephemeral``, the ``eks_cluster`` DAG) runs eksctl
    with the lifecycle identity's permissions (:func:`lifecycle_policy`), never with these.
    """
    from eksml.cluster.config import CLUSTER_ADMIN_POLICY

    account = account_id or "*"
    partition = partition_for(region)
    statements = s3_statements(Identity.PIPELINE, store_uri, model_name, region, kms_key_arn=kms_key_arn)
    statements.append(
        {
            "Sid": "PreflightBucket",
            "Effect": "Allow",
            "Action": list(PIPELINE_BUCKET_ACTIONS),
            "Resource": bucket_arn(store_uri, region),
        }
    )
    statements += _service_statements(PIPELINE_SERVICE_ACTIONS, region, account, cluster_name)
    statements.append(
        {
            "Sid": "EksAddonInstallAdmin",
            "Effect": "Allow",
            "Action": "eks:AssociateAccessPolicy",
            "Resource": [
                r.format(partition=partition, region=region, account=account, cluster=cluster_name)
                for r in PROJECT_ACCESS_ENTRIES
            ],
            "Condition": {"StringEquals": {"eks:policyArn": CLUSTER_ADMIN_POLICY.format(partition=partition)}},
        }
    )
    statements.append(
        {
            "Sid": "PassSageMakerRole",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": sagemaker_role_arn,
            "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        }
    )
    return {"Version": POLICY_VERSION, "Statement": statements}


def role_arn(account_id: str, role_name: str, region: str) -> str:
    """ARN of an IAM role eksctl creates with a fixed ``roleName``."""
    if not re.fullmatch(r"\d{12}", account_id or ""):
        raise ValueError(f"AWS account id must be 12 digits, got {account_id!r}")
    return f"arn:{partition_for(region)}:iam::{account_id}:role/{role_name}"


def account_from_arn(arn: str) -> str | None:
    """The account field of an ARN, or None when it has none."""
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 and re.fullmatch(r"\d{12}", parts[4]) else None


_ASSUMED_ROLE = re.compile(r"^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([^/]+)/[^/]+$")


def principal_arn(caller_arn: str) -> str:
    """The IAM principal an access entry names, from an STS caller ARN.

    An assumed-role session (``arn:aws:sts::A:assumed-role/R/S``) maps to its role
    ``arn:aws:iam::A:role/R``; users and roles are returned as they are. (A role created under a
    path needs its full ARN in ``pipeline_principal_arn``: the session ARN does not carry it.)
    """
    match = _ASSUMED_ROLE.match(caller_arn)
    if match:
        partition, account, role = match.groups()
        return f"arn:{partition}:iam::{account}:role/{role}"
    return caller_arn
