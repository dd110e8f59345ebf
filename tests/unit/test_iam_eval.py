"""The tests' IAM evaluator against AWS's documented examples, and the S3 request -> action map
against the Service Authorization Reference.

Each case names the AWS page its policy and expected outcome come from. What the evaluator does
not implement is in ``tests/fixtures/iam_eval.py``'s docstring; those operators raise instead of
answering.
"""

from __future__ import annotations

import pytest
from fixtures.iam_eval import (
    ALLOWED,
    EXPLICIT_DENY,
    IMPLICIT_DENY,
    Request,
    Unsupported,
    arn_like,
    condition_holds,
    evaluate,
    kms_authorizations,
    missing_key_probe,
    s3_authorizations,
)

OPERATORS = "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html"
LOGIC = "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html"
BOUNDARIES = "https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html"
S3_KEYS = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/amazon-s3-policy-keys.html"


def _allow(action: str, resource: str = "*", condition: dict | None = None, effect: str = "Allow") -> dict:
    st = {"Effect": effect, "Action": action, "Resource": resource}
    if condition:
        st["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [st]}


# --- condition operators, from the examples of the condition operators page (OPERATORS) ---------
@pytest.mark.parametrize(
    ("context", "holds"),
    [
        ({"aws:PrincipalTag/job-category": "iamuser-admin"}, True),
        ({"aws:PrincipalTag/job-category": "dev-ops"}, False),
        ({}, False),
    ],
)
def test_string_equals_example(context, holds):
    # OPERATORS, "String condition operators": StringEquals aws:PrincipalTag/job-category
    # "iamuser-admin"; a request without the tag does not match
    assert condition_holds("StringEquals", "aws:PrincipalTag/job-category", "iamuser-admin", context) is holds


@pytest.mark.parametrize(
    ("context", "holds"),
    [({"ec2:InstanceType": "t2.micro"}, True), ({"ec2:InstanceType": "m5.large"}, False), ({}, True)],
)
def test_string_like_if_exists_example(context, holds):
    # OPERATORS, "...IfExists condition operators": StringLikeIfExists ec2:InstanceType
    # ["t1.*", "t2.*", "m3.*"]: matched when present, true when the key is absent
    assert condition_holds("StringLikeIfExists", "ec2:InstanceType", ["t1.*", "t2.*", "m3.*"], context) is holds


@pytest.mark.parametrize(("context", "holds"), [({}, True), ({"aws:TokenIssueTime": "2026-12-07T00:00:00Z"}, False)])
def test_null_example(context, holds):
    # OPERATORS, "Condition operator to check existence of condition keys": Null
    # aws:TokenIssueTime "true" holds for long-term credentials (the key is absent)
    assert condition_holds("Null", "aws:TokenIssueTime", "true", context) is holds


@pytest.mark.parametrize(
    ("context", "holds"),
    [({"aws:SecureTransport": "true"}, True), ({"aws:SecureTransport": "false"}, False), ({}, False)],
)
def test_bool_example(context, holds):
    # OPERATORS, "Boolean condition operators": Bool aws:SecureTransport "true"
    assert condition_holds("Bool", "aws:SecureTransport", "true", context) is holds


def test_arn_operators_match_each_of_the_six_parts():
    # OPERATORS, "Amazon Resource Name (ARN) condition operators": ArnEquals aws:SourceArn
    # "arn:aws:sns:REGION:123456789012:TOPIC-ID"; each colon-delimited part matched separately
    topic = "arn:aws:sns:us-west-2:123456789012:TOPIC-ID"
    assert condition_holds("ArnEquals", "aws:SourceArn", topic, {"aws:SourceArn": topic})
    assert not condition_holds("ArnEquals", "aws:SourceArn", topic, {"aws:SourceArn": topic + "-2"})
    assert not condition_holds("ArnEquals", "aws:SourceArn", topic, {})
    assert arn_like("arn:aws:sns:*:123456789012:TOPIC-*", topic)
    assert not arn_like("arn:aws:sns:*:123456789012:TOPIC-*", "arn:aws:sns:us-west-2:999999999999:TOPIC-ID")
    assert not arn_like("arn:aws:*:*:*:x", "arn:aws:sns:us-west-2:1:y")


def test_values_are_ored_keys_and_operators_anded():
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-logic-multiple-context-keys-or-values.html
    cond = {"StringEquals": {"aws:PrincipalTag/dept": ["eng", "qa"], "aws:PrincipalTag/level": "senior"}}
    doc = _allow("s3:GetObject", condition=cond)
    assert evaluate(
        [doc], Request("s3:GetObject", "*", {"aws:PrincipalTag/dept": "qa", "aws:PrincipalTag/level": "senior"})
    ).allowed
    assert not evaluate([doc], Request("s3:GetObject", "*", {"aws:PrincipalTag/dept": "qa"})).allowed


def test_unimplemented_grammar_raises_instead_of_answering():
    with pytest.raises(Unsupported):
        condition_holds("NumericLessThan", "s3:max-keys", "10", {"s3:max-keys": "5"})
    with pytest.raises(Unsupported):
        condition_holds("ForAnyValue:StringLike", "aws:TagKeys", "a*", {"aws:TagKeys": "ab"})
    with pytest.raises(Unsupported):
        condition_holds("StringLike", "s3:prefix", "home/${aws:username}/*", {"s3:prefix": "home/x/"})


# --- evaluation logic (LOGIC, BOUNDARIES) --------------------------------------------------------
def test_explicit_deny_wins_and_nothing_allowed_is_an_implicit_deny():
    allow, deny = _allow("s3:*"), _allow("s3:DeleteObject", effect="Deny")
    assert evaluate([allow, deny], Request("s3:DeleteObject", "arn:aws:s3:::b/k")).decision == EXPLICIT_DENY
    assert evaluate([allow, deny], Request("s3:GetObject", "arn:aws:s3:::b/k")).decision == ALLOWED
    assert evaluate([deny], Request("s3:GetObject", "arn:aws:s3:::b/k")).decision == IMPLICIT_DENY


def test_permissions_boundary_example():
    # BOUNDARIES, "Evaluating effective permissions with boundaries": the identity policy allows
    # iam:CreateUser, the boundary allows s3:*, cloudwatch:*, ec2:*: she can create no user
    identity = _allow("iam:CreateUser")
    boundary = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:*", "cloudwatch:*", "ec2:*"], "Resource": "*"}],
    }
    assert evaluate([identity], Request("iam:CreateUser", "*"), boundary=boundary).decision == IMPLICIT_DENY
    assert not evaluate([_allow("s3:GetObject")], Request("s3:PutObject", "*"), boundary=boundary).allowed
    assert evaluate([_allow("s3:GetObject")], Request("s3:GetObject", "*"), boundary=boundary).allowed


def test_s3_prefix_example_refuses_head_bucket():
    # S3_KEYS, "Example 2: Getting a list of objects in a bucket with a specific prefix": ListBucket
    # granted with StringEquals s3:prefix "projects". HeadBucket is s3:ListBucket without s3:prefix
    # (S3 API Reference, HeadBucket), so that grant never covers it.
    doc = _allow("s3:ListBucket", "arn:aws:s3:::amzn-s3-demo-bucket", {"StringEquals": {"s3:prefix": "projects"}})
    listing = s3_authorizations("GET", "/amzn-s3-demo-bucket", "list-type=2&prefix=projects", {})
    other = s3_authorizations("GET", "/amzn-s3-demo-bucket", "list-type=2&prefix=private", {})
    head = s3_authorizations("HEAD", "/amzn-s3-demo-bucket", "", {})
    assert evaluate([doc], listing[0]).allowed
    assert not evaluate([doc], other[0]).allowed
    assert not evaluate([doc], head[0]).allowed


# --- S3 requests -> IAM authorizations (Service Authorization Reference for Amazon S3) ----------
@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "expected"),
    [
        ("HEAD", "/b", "", {}, [("s3:ListBucket", "arn:aws:s3:::b", {})]),
        ("GET", "/b", "location=", {}, [("s3:GetBucketLocation", "arn:aws:s3:::b", {})]),
        ("GET", "/b", "encryption=", {}, [("s3:GetEncryptionConfiguration", "arn:aws:s3:::b", {})]),
        (
            "GET",
            "/b",
            "list-type=2&prefix=p%2F&delimiter=%2F&max-keys=1",
            {},
            [("s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "p/", "s3:delimiter": "/", "s3:max-keys": "1"})],
        ),
        ("GET", "/b", "list-type=2", {}, [("s3:ListBucket", "arn:aws:s3:::b", {})]),
        ("HEAD", "/b/p/k", "", {}, [("s3:GetObject", "arn:aws:s3:::b/p/k", {})]),
        ("GET", "/b/p/k", "versionId=3", {}, [("s3:GetObjectVersion", "arn:aws:s3:::b/p/k", {})]),
        ("PUT", "/b/p/k", "partNumber=1&uploadId=u", {}, [("s3:PutObject", "arn:aws:s3:::b/p/k", {})]),
        ("POST", "/b/p/k", "uploads=", {}, [("s3:PutObject", "arn:aws:s3:::b/p/k", {})]),
        ("GET", "/b/p/k", "uploadId=u", {}, [("s3:ListMultipartUploadParts", "arn:aws:s3:::b/p/k", {})]),
        ("DELETE", "/b/p/k", "uploadId=u", {}, [("s3:AbortMultipartUpload", "arn:aws:s3:::b/p/k", {})]),
        ("DELETE", "/b/p/k", "", {}, [("s3:DeleteObject", "arn:aws:s3:::b/p/k", {})]),
        (
            "PUT",
            "/b/p/new",
            "",
            {"x-amz-copy-source": "/b/p/old"},
            [("s3:PutObject", "arn:aws:s3:::b/p/new", {}), ("s3:GetObject", "arn:aws:s3:::b/p/old", {})],
        ),
    ],
)
def test_s3_request_authorizations(method, path, query, headers, expected):
    got = [(r.action, r.resource, dict(r.context)) for r in s3_authorizations(method, path, query, headers)]
    assert got == expected


def test_delete_objects_needs_delete_object_on_every_key():
    body = b"<Delete><Object><Key>p/a</Key></Object><Object><Key>p/b</Key></Object></Delete>"
    got = [(r.action, r.resource) for r in s3_authorizations("POST", "/b", "delete=", {}, body)]
    assert got == [("s3:DeleteObject", "arn:aws:s3:::b/p/a"), ("s3:DeleteObject", "arn:aws:s3:::b/p/b")]


def test_missing_key_answer_depends_on_unprefixed_list_bucket():
    # S3 API Reference, HeadObject "Permissions": 404 with s3:ListBucket, 403 without
    probe = missing_key_probe("b")
    prefixed = _allow("s3:ListBucket", "arn:aws:s3:::b", {"StringLike": {"s3:prefix": ["p", "p/*"]}})
    unprefixed = _allow("s3:ListBucket", "arn:aws:s3:::b", {"Null": {"s3:prefix": "true"}})
    assert (probe.action, probe.resource, dict(probe.context)) == ("s3:ListBucket", "arn:aws:s3:::b", {})
    assert not evaluate([prefixed], probe).allowed
    assert evaluate([unprefixed], probe).allowed


def test_kms_calls_s3_makes_for_an_sse_kms_bucket():
    key = "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    reads = s3_authorizations("GET", "/b/p/k", "", {})
    writes = s3_authorizations("PUT", "/b/p/k", "", {})
    heads = s3_authorizations("HEAD", "/b/p/k", "", {})
    via = {"kms:ViaService": "s3.us-west-2.amazonaws.com"}
    assert [(r.action, dict(r.context)) for r in kms_authorizations(reads, key, "us-west-2")] == [("kms:Decrypt", via)]
    assert [(r.action, dict(r.context)) for r in kms_authorizations(writes, key, "us-west-2")] == [
        ("kms:GenerateDataKey", via)
    ]
    assert kms_authorizations(heads, key, "us-west-2") == []
