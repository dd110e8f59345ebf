"""Least-privilege IAM policy documents for the pods' IRSA roles.

Training reads the data prefix and writes the models prefix; inference only reads models.
Everything is scoped to the bucket and prefix of ``Settings.store_uri`` so a role can
never touch another project's objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class StoreUriError(ValueError):
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
        if not _BUCKET_RE.match(bucket) or ".." in bucket:
            raise StoreUriError(f"invalid S3 bucket name {bucket!r} in {uri!r}")
        return cls(bucket=bucket, prefix=prefix.strip("/"))

    def key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))


def partition_for(region: str) -> str:
    """ARN partition of a region (China and GovCloud have their own)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def _list_statement(arn_bucket: str, prefixes: list[str]) -> dict[str, Any]:
    patterns = [p for prefix in prefixes for p in (prefix, f"{prefix}/*")]
    return {
        "Sid": "ListOwnPrefixes",
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": arn_bucket,
        "Condition": {"StringLike": {"s3:prefix": patterns}},
    }


def training_policy(store_uri: str, model_name: str, region: str) -> dict[str, Any]:
    """Read data, read and write model artifacts and checkpoints."""
    loc = S3Location.parse(store_uri)
    arn = f"arn:{partition_for(region)}:s3:::{loc.bucket}"
    data, models = loc.key("data", model_name), loc.key("models", model_name)
    return {
        "Version": "2012-10-17",
        "Statement": [
            _list_statement(arn, [data, models]),
            {"Sid": "ReadData", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"{arn}/{data}/*"},
            {
                "Sid": "WriteModels",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                "Resource": f"{arn}/{models}/*",
            },
        ],
    }


def inference_policy(store_uri: str, model_name: str, region: str) -> dict[str, Any]:
    """Read model artifacts only."""
    loc = S3Location.parse(store_uri)
    arn = f"arn:{partition_for(region)}:s3:::{loc.bucket}"
    models = loc.key("models", model_name)
    return {
        "Version": "2012-10-17",
        "Statement": [
            _list_statement(arn, [models]),
            {"Sid": "ReadModels", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"{arn}/{models}/*"},
        ],
    }


def role_arn(account_id: str, role_name: str, region: str) -> str:
    """ARN of an IAM role eksctl creates with a fixed ``roleName``."""
    if not re.fullmatch(r"\d{12}", account_id or ""):
        raise ValueError(f"AWS account id must be 12 digits, got {account_id!r}")
    return f"arn:{partition_for(region)}:iam::{account_id}:role/{role_name}"


def account_from_arn(arn: str) -> str | None:
    """The account field of an ARN, or None when it has none."""
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 and re.fullmatch(r"\d{12}", parts[4]) else None
