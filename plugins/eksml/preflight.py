"""Preflight: what a real AWS account would reject, checked before a run spends anything.

``python -m eksml.preflight`` and the training DAG's first task (aws profile) check:

* each identity's permissions for the calls it will make: the actions and resources of the
  policies the project renders (``eksml.cluster.iam``), simulated with IAM's policy simulator
  against the principals that will make them (Airflow's, the SageMaker role, the training IRSA
  role, and for ephemeral clusters the lifecycle identity eksctl runs as), with a request
  context that satisfies each statement's conditions;
* the EC2 vCPU quota of the GPU node group's instance type, or the SageMaker training quota of
  the instance type asked for; for a cluster about to be created (``eks_cluster``, an ephemeral
  run) every quota its node groups draw on, standard on-demand vCPUs included;
* that the images exist in the registry (ECR), that SageMaker's Deep Learning Containers are
  known for the region and still patched, that the bucket exists in the configured region and
  that its encryption key is one the policies grant, that the Kubernetes version is in EKS
  support;
* that Airflow's workers will reach the cluster's API, and the prerequisites of the
  integrations the settings turn on (``eksml.preflight_integrations``);

and print an estimated cost from the dated price table (``eksml.prices``). Every finding names
its fix. AWS is reached through the Airflow AWS connection.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from typing import Any

from eksml.cluster.node_contract import CLUSTER_MODES, EPHEMERAL_CLUSTER, EXISTING_CLUSTER
from eksml.params import TrainingParams, validate_training_params
from eksml.preflight_findings import ERROR, OK, WARNING, ClientFactory, Finding, Report, aws_clients, error_code
from eksml.prices import hourly_cost
from eksml.settings import Settings, resolve_settings

_ECR_REGISTRY = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?(?:/(.+))?$")


# --- store, images, version ------------------------------------------------------------------
def check_bucket(s3: Any, settings: Settings) -> list[Finding]:
    from botocore.exceptions import ClientError

    bucket = settings.store_uri[len("s3://") :].split("/", 1)[0]
    try:
        s3.head_bucket(Bucket=bucket)
        where = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1"
    except ClientError as exc:
        return [
            Finding(
                "bucket",
                ERROR,
                f"bucket {bucket} cannot be reached: {error_code(exc) or exc}",
                f"create it in {settings.region} (aws s3 mb s3://{bucket} --region {settings.region}) or fix "
                "EKSML_STORE_URI",
            )
        ]
    if where != settings.region:
        return [
            Finding(
                "bucket",
                ERROR,
                f"bucket {bucket} is in {where}, the pipeline runs in {settings.region}",
                f"set EKSML_REGION={where} or use a bucket in {settings.region}",
            )
        ]
    return [Finding("bucket", OK, f"bucket {bucket} exists in {where}")]


def images_needed(params: TrainingParams) -> list[str]:
    from eksml.specs import TRAINING_IMAGES

    names = {TRAINING_IMAGES[f] for f in params.frameworks} if params.trainer == "kubernetes" else set()
    return sorted(names | {"inference"})  # evaluation and serving


def check_images(ecr: Any, settings: Settings, names: list[str]) -> list[Finding]:
    match = _ECR_REGISTRY.match(settings.image_registry)
    if not match:
        return [
            Finding(
                "images",
                WARNING,
                f"{settings.image_registry} is not a private ECR registry: not checked",
                "push the images to ECR and set EKSML_IMAGE_REGISTRY=<account>.dkr.ecr.<region>.amazonaws.com/<prefix>",
            )
        ]
    account, _, prefix = match.groups()
    findings = []
    for name in names:
        repository = f"{prefix}/{name}" if prefix else name
        findings.append(_check_image(ecr, settings, name, account, repository))
    return findings


def _check_image(ecr: Any, settings: Settings, name: str, account: str, repository: str) -> Finding:
    """The image a run will pull: the pinned digest when there is one (the aws profile requires
    it; ``check_image_pins``), else the tag. A digest is looked up as such, so a tag pushed again
    since the digest was pinned does not pass for it."""
    from botocore.exceptions import ClientError

    def lookup(image_id: dict[str, str]) -> dict[str, Any] | None:
        try:
            details = ecr.describe_images(registryId=account, repositoryName=repository, imageIds=[image_id])
        except ClientError as exc:
            if error_code(exc) in ("ImageNotFoundException", "RepositoryNotFoundException"):
                return None
            raise
        return details["imageDetails"][0]

    tagged, digest = settings.tagged_image(name), settings.image_digest(name)
    # `docker build -t` takes a name and tag, never a digest; the registry assigns the digest on push.
    build_and_push = (
        f"build and push it: docker build -f images/{name}/Dockerfile -t {tagged} images && docker push {tagged}"
    )
    try:
        if digest and lookup({"imageDigest": digest}):
            return Finding("images", OK, f"{settings.image(name)} exists")
        by_tag = lookup({"imageTag": settings.image_tag})
    except ClientError as exc:
        return Finding("images", ERROR, f"{tagged}: cannot look it up ({error_code(exc)})", "check the ECR permissions")
    if not digest:
        if by_tag:
            return Finding("images", OK, f"{tagged} exists")
        return Finding("images", ERROR, f"{tagged} not found", build_and_push)
    if by_tag:
        pushed = by_tag["imageDigest"]
        return Finding(
            "images",
            ERROR,
            f"{name}@{digest} not found in {repository}; its tag {settings.image_tag} is {pushed}",
            f"pin the pushed image (EKSML_IMAGE_DIGESTS entry {name}@{pushed}) or push the one pinned",
        )
    return Finding(
        "images",
        ERROR,
        f"{tagged}@{digest} not found in {repository}",
        f"{build_and_push}, then pin the digest the push prints: EKSML_IMAGE_DIGESTS entry {name}@sha256:<digest>",
    )


def check_image_pins(settings: Settings, names: list[str]) -> list[Finding]:
    """The aws profile runs images from the user's own registry, pinned by digest."""
    from eksml.settings import DEFAULT_IMAGE_REGISTRY

    findings = []
    if settings.image_registry == DEFAULT_IMAGE_REGISTRY:
        findings.append(
            Finding(
                "image registry",
                ERROR,
                f"{DEFAULT_IMAGE_REGISTRY} is the project's placeholder, not a registry you own",
                "create a private ECR registry, push the images there (docs/aws.md, 'First run on AWS') and set "
                "EKSML_IMAGE_REGISTRY=<account>.dkr.ecr.<region>.amazonaws.com/eksml",
            )
        )
    unpinned = [name for name in names if not settings.image_digest(name)]
    if unpinned:
        findings.append(
            Finding(
                "image digests",
                ERROR,
                f"not pinned by digest: {', '.join(unpinned)} (a tag can be pushed again under a run)",
                "set EKSML_IMAGE_DIGESTS=" + ",".join(f"{n}@sha256:<digest docker push printed>" for n in unpinned),
            )
        )
    return findings or [Finding("image digests", OK, f"{', '.join(names)} pinned by digest")]


def check_version(settings: Settings) -> list[Finding]:
    from eksml.cluster.versions import KubernetesVersionError, check_kubernetes_version

    try:
        warnings = check_kubernetes_version(settings.kubernetes_version)
    except KubernetesVersionError as exc:
        return [Finding("kubernetes version", ERROR, str(exc), "set EKSML_KUBERNETES_VERSION")]
    return [Finding("kubernetes version", WARNING, w, "set EKSML_KUBERNETES_VERSION") for w in warnings] or [
        Finding("kubernetes version", OK, f"{settings.kubernetes_version} is in EKS standard support")
    ]


# --- permissions ------------------------------------------------------------------------------
def _probe_value(operator: str, value: str) -> tuple[str, str]:
    """A request-context value that satisfies ``operator`` with the policy's ``value``, and its type."""
    if operator.startswith("Bool"):
        return value, "boolean"
    if "Like" in operator:
        return value.replace("*", "preflight-probe").replace("?", "x"), "string"
    return value, "string"


def probes(policy: dict[str, Any]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(action, a concrete resource, context entries) for every action of ``policy``.

    The context satisfies the statement's conditions, so the simulator answers whether the
    principal holds that statement: a ``StringLike``/``ArnLike`` pattern's wildcards are filled
    in, ``StringEquals`` takes its first value, a ``Null: true`` key stays absent.
    """
    out = []
    for st in policy["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        first = st["Resource"][0] if isinstance(st["Resource"], list) else st["Resource"]
        resource = first.replace("*", "preflight-probe") if first != "*" else "*"
        context = []
        for operator, keys in (st.get("Condition") or {}).items():
            for key, values in keys.items():
                value = str(values[0] if isinstance(values, list) else values)
                if operator.startswith("Null"):
                    if value.lower() == "true":
                        continue
                    value = "preflight-probe"
                value, kind = _probe_value(operator, value)
                context.append({"ContextKeyName": key, "ContextKeyValues": [value], "ContextKeyType": kind})
        out.extend((action, resource, context) for action in actions)
    return out


def check_permissions(
    iam: Any,
    identity: str,
    principal: str,
    policy: dict[str, Any],
    fix: str,
    calls: list[tuple[str, str, list[dict[str, Any]]]] | None = None,
) -> list[Finding]:
    """Simulate ``principal`` on every statement of ``policy`` (or on the given ``calls``)."""
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    denied = []
    calls = probes(policy) if calls is None else calls
    try:
        for action, resource, context in calls:
            answer = iam.simulate_principal_policy(
                PolicySourceArn=principal, ActionNames=[action], ResourceArns=[resource], ContextEntries=context
            )
            for result in answer["EvaluationResults"]:
                if result["EvalDecision"] != "allowed":
                    denied.append(f"{action} on {resource} ({result['EvalDecision']})")
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        if error_code(exc) == "NoSuchEntity":
            return [Finding(f"permissions: {identity}", ERROR, f"{principal} does not exist", fix)]
        return [
            Finding(
                f"permissions: {identity}",
                WARNING,
                f"cannot simulate {principal}'s policies: {error_code(exc) or type(exc).__name__}",
                "allow iam:SimulatePrincipalPolicy to the Airflow identity to check this before a run",
            )
        ]
    if denied:
        return [Finding(f"permissions: {identity}", ERROR, f"{principal} may not: " + "; ".join(denied), fix)]
    return [Finding(f"permissions: {identity}", OK, f"{principal}: {len(calls)} call(s) allowed")]


# --- quotas -----------------------------------------------------------------------------------
def _quota_fix(code: str, name: str, value: float, region: str) -> str:
    return (
        f"request an increase of EC2 quota {code} '{name}' to at least {value:g} in {region} "
        f"(aws service-quotas request-service-quota-increase --service-code ec2 --quota-code {code} "
        f"--desired-value {value:g} --region {region})"
    )


def check_ec2_quota(quotas: Any, instance_type: str, nodes: int, spot: bool, region: str) -> list[Finding]:
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    from eksml.cluster.instance_types import ec2_quota_for, vcpus

    code, name = ec2_quota_for(instance_type, spot)
    needed = vcpus(instance_type) * nodes
    fix = _quota_fix(code, name, needed, region)
    try:
        value = quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"]
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        return [
            Finding("quota: ec2", WARNING, f"cannot read quota {code}: {error_code(exc) or type(exc).__name__}", fix)
        ]
    if value < needed:
        return [
            Finding(
                "quota: ec2", ERROR, f"{name} ({code}) is {value:g} vCPUs; {nodes} x {instance_type} need {needed}", fix
            )
        ]
    return [Finding("quota: ec2", OK, f"{name} ({code}) {value:g} vCPUs >= {needed}")]


def check_sagemaker_quota(quotas: Any, instance_type: str, count: int, spot: bool, region: str) -> list[Finding]:
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    wanted = f"{instance_type} for {'spot ' if spot else ''}training job usage"
    fix = f"request an increase of the SageMaker quota '{wanted}' to at least {count} in {region}"
    try:
        for page in quotas.get_paginator("list_service_quotas").paginate(ServiceCode="sagemaker"):
            for quota in page["Quotas"]:
                if quota["QuotaName"] == wanted:
                    if quota["Value"] < count:
                        return [
                            Finding(
                                "quota: sagemaker",
                                ERROR,
                                f"'{wanted}' ({quota['QuotaCode']}) is {quota['Value']:g}, the run needs {count}",
                                fix,
                            )
                        ]
                    return [Finding("quota: sagemaker", OK, f"'{wanted}' {quota['Value']:g} >= {count}")]
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        return [
            Finding(
                "quota: sagemaker",
                WARNING,
                f"cannot list SageMaker quotas: {error_code(exc) or type(exc).__name__}",
                fix,
            )
        ]
    return [Finding("quota: sagemaker", ERROR, f"no quota '{wanted}' in {region}", fix)]


def node_group_vcpus(configs: list[Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """vCPUs each EC2 quota must cover for ``configs``' node groups: at their min, desired and max
    sizes, with the groups that count towards it (a spot group's largest type counts)."""
    from eksml.cluster.instance_types import ec2_quota_for, vcpus

    needs: dict[tuple[str, str], dict[str, Any]] = {}
    for cfg in configs:
        for ng in cfg.node_groups:
            per_node = max(vcpus(t) for t in ng.instance_types)
            need = needs.setdefault(
                ec2_quota_for(ng.instance_types[0], ng.spot), {"min": 0, "desired": 0, "max": 0, "groups": []}
            )
            need["min"] += per_node * ng.min_size
            need["desired"] += per_node * ng.desired_capacity
            need["max"] += per_node * ng.max_size
            need["groups"].append(
                f"{cfg.name}/{ng.name} {ng.desired_capacity} x {','.join(ng.instance_types)} ({per_node} vCPUs each)"
            )
    return needs


def check_node_group_quotas(quotas: Any, configs: list[Any], region: str) -> list[Finding]:
    """Every EC2 vCPU quota the node groups draw on (GPU and standard), against what they need.

    Below the min or desired sizes the create fails after the control plane was built (a node
    group stack times out): an error, found before anything is created. Below the max sizes the
    autoscaler stops early: a warning.
    """
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    findings = []
    for (code, name), need in sorted(node_group_vcpus(configs).items()):
        wanted = max(need["desired"], need["min"])

        def fix(value: float, code: str = code, name: str = name) -> str:
            return _quota_fix(code, name, value, region)

        try:
            value = quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"]
        except (ClientError, BotoCoreError, ResponseParserError) as exc:
            findings.append(
                Finding(
                    "quota: ec2",
                    WARNING,
                    f"cannot read quota {code}: {error_code(exc) or type(exc).__name__}",
                    fix(wanted),
                )
            )
            continue
        groups = "; ".join(need["groups"])
        if value < wanted:
            findings.append(
                Finding(
                    "quota: ec2",
                    ERROR,
                    f"{name} ({code}) is {value:g} vCPUs; the node groups need {wanted} at their desired sizes "
                    f"(min {need['min']}): {groups}",
                    fix(wanted),
                )
            )
        elif value < need["max"]:
            findings.append(
                Finding(
                    "quota: ec2",
                    WARNING,
                    f"{name} ({code}) is {value:g} vCPUs: enough to create, but the autoscaler stops below the "
                    f"max sizes ({need['max']} vCPUs): {groups}",
                    fix(need["max"]),
                )
            )
        else:
            findings.append(Finding("quota: ec2", OK, f"{name} ({code}) {value:g} vCPUs >= {need['max']} (max sizes)"))
    return findings


def cluster_preflight(settings: Settings, request: Any, *, clients: ClientFactory | None = None) -> Report:
    """What ``eks_cluster`` checks before eksctl creates or scales anything: the Kubernetes version
    and every EC2 vCPU quota the requested node groups draw on; with the hourly cost they run at."""
    from eksml.cluster.request import build_cluster_configs

    clients = clients or aws_clients(settings)
    configs = build_cluster_configs(request)
    report = Report()
    report.findings += check_version(settings.replace(kubernetes_version=request.kubernetes_version))
    report.findings += check_node_group_quotas(clients("service-quotas"), configs, request.region)
    total, lines = hourly_cost(
        [(c.name, [(ng.instance_types[0], ng.desired_capacity) for ng in c.node_groups]) for c in configs]
    )
    report.estimate = [*lines, f"total about ${total:.2f}/h while running at the desired sizes"]
    return report


def run_cluster_preflight(overrides: dict[str, Any]) -> list[str]:
    """The ``eks_cluster`` DAG's check: :func:`cluster_preflight` for the settings and the run's
    cluster overrides; raise with every finding and its fix, else return the report's lines."""
    import logging

    from eksml.cluster.request import ClusterRequest
    from eksml.errors import PreflightError

    settings = resolve_settings()
    report = cluster_preflight(settings, ClusterRequest.from_settings(settings, **overrides))
    logging.getLogger(__name__).info("preflight:\n%s", report.text())
    if report.errors:  # nothing created yet: fix these first
        raise PreflightError("preflight found what AWS would reject:\n" + "\n".join(map(str, report.errors)))
    return report.text().splitlines()


# --- bucket encryption, the lifecycle identity, SageMaker images ---------------------------------
_AWS_MANAGED_S3_KEY = re.compile(r"(^|:)alias/aws/s3$")


def check_bucket_encryption(s3: Any, settings: Settings) -> list[Finding]:
    """The bucket's default encryption against ``store_kms_key_arn``: a customer-managed key the
    policies do not name gives AccessDenied in pods and SageMaker, not at preflight."""
    from botocore.exceptions import ClientError

    bucket = settings.store_uri[len("s3://") :].split("/", 1)[0]
    fix = (
        "set EKSML_STORE_KMS_KEY_ARN to the bucket's key ARN and attach the policies printed by "
        "python -m eksml.cluster.eksctl iam <identity> again (the key policy must let the account's IAM policies "
        "grant it: the default key policy does)"
    )
    try:
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    except ClientError as exc:
        if error_code(exc) == "ServerSideEncryptionConfigurationNotFoundError":
            return [Finding("bucket encryption", OK, f"bucket {bucket}: S3-managed keys (no KMS permission needed)")]
        return [
            Finding(
                "bucket encryption",
                WARNING,
                f"cannot read bucket {bucket}'s encryption: {error_code(exc) or exc}",
                "allow s3:GetEncryptionConfiguration on the bucket (python -m eksml.cluster.eksctl iam pipeline)",
            )
        ]
    default = (rules[0].get("ApplyServerSideEncryptionByDefault") or {}) if rules else {}
    key = default.get("KMSMasterKeyID", "")
    if not default.get("SSEAlgorithm", "AES256").startswith("aws:kms"):
        return [Finding("bucket encryption", OK, f"bucket {bucket}: S3-managed keys (no KMS permission needed)")]
    if not key or _AWS_MANAGED_S3_KEY.search(key):
        return [Finding("bucket encryption", OK, f"bucket {bucket}: SSE-KMS with the AWS managed key aws/s3")]
    configured = settings.store_kms_key_arn
    if not configured:
        return [
            Finding(
                "bucket encryption",
                ERROR,
                f"bucket {bucket} encrypts with the customer-managed KMS key {key}: without kms:Decrypt and "
                "kms:GenerateDataKey on it every read and write of the pods and SageMaker is AccessDenied",
                fix,
            )
        ]
    if key != configured and not configured.endswith(f":key/{key}"):
        return [
            Finding(
                "bucket encryption",
                ERROR,
                f"bucket {bucket} encrypts with KMS key {key}, the policies grant {configured}",
                fix,
            )
        ]
    return [Finding("bucket encryption", OK, f"bucket {bucket}: SSE-KMS with {configured}, granted through S3")]


def check_lifecycle_permissions(iam_client: Any, settings: Settings, principal: str, account: str) -> list[Finding]:
    """Simulate the calls eksctl makes (``eksml.cluster.lifecycle_iam.EKSCTL_CALLS``) as ``principal``."""
    from eksml.cluster.lifecycle_iam import lifecycle_calls, lifecycle_policy

    calls = [
        (
            action,
            resource,
            [{"ContextKeyName": k, "ContextKeyValues": [v], "ContextKeyType": "string"} for k, v in context.items()],
        )
        for action, resource, context in lifecycle_calls(settings.cluster_name, settings.region, account)
    ]
    accounts = (settings.training_service_account, settings.inference_service_account)
    policy = lifecycle_policy(settings.cluster_name, settings.region, service_accounts=accounts, account_id=account)
    fix = (
        "attach the policy printed by: python -m eksml.cluster.eksctl iam lifecycle, with the boundary printed by: "
        "python -m eksml.cluster.eksctl iam lifecycle-boundary (EKSML_LIFECYCLE_AWS_CONN_ID names its connection)"
    )
    return check_permissions(iam_client, "lifecycle", principal, policy, fix, calls=calls)


def check_sagemaker_images(settings: Settings, params: TrainingParams, today: dt.date | None = None) -> list[Finding]:
    """Each framework's Deep Learning Container: known for the region, and still patched by AWS."""
    from eksml.sagemaker.images import training_image, training_image_uri
    from eksml.sagemaker.instances import instance_gpus

    today = today or dt.date.today()
    gpu = instance_gpus(params.sagemaker_instance_type) > 0
    findings = []
    for framework in params.frameworks:
        image = training_image(framework)
        try:
            uri = training_image_uri(framework, settings.region, gpu=gpu)
        except ValueError as exc:
            findings.append(
                Finding("sagemaker images", ERROR, str(exc), "run in a region with Deep Learning Containers")
            )
            continue
        if image.supported_on(today):
            findings.append(Finding("sagemaker images", OK, f"{uri} (AWS patches it until {image.end_of_patch})"))
            continue
        why = (
            f"end of patch {image.end_of_patch}" if image.end_of_patch else f"AWS publishes no patched {framework} DLC"
        )
        if settings.sagemaker_allow_unpatched_images:
            findings.append(
                Finding("sagemaker images", WARNING, f"{uri}: {why}; allowed by sagemaker_allow_unpatched_images")
            )
            continue
        findings.append(
            Finding(
                "sagemaker images",
                ERROR,
                f"{uri}: {why}, so it gets no security fixes",
                f"train {framework} on EKS (trainer=kubernetes), or accept the image: "
                "EKSML_SAGEMAKER_ALLOW_UNPATCHED_IMAGES=true",
            )
        )
    return findings


# --- cost -------------------------------------------------------------------------------------
def estimate(settings: Settings, params: TrainingParams, req: Any, hours: float) -> list[str]:
    from eksml import prices
    from eksml.cluster.request import train_node_group

    lines = [
        f"prices: {prices.PRICES_REGION} on-demand list prices of {prices.PRICES_DATE} (eksml/prices.py); "
        f"region {settings.region}" + ("" if settings.region == prices.PRICES_REGION else " may differ")
    ]
    total = 0.0
    if params.trainer == "sagemaker":
        instance = params.sagemaker_instance_type
        price = prices.SAGEMAKER_TRAINING_HOUR.get(instance)
        count = len(params.frameworks)
        if price is None:
            return [*lines, f"no price for {instance} in the table: add it to eksml/prices.py"]
        total += price * count * hours
        lines.append(
            f"{count} SageMaker job(s) on {instance} x {hours:g} h x ${price}/h = ${price * count * hours:.2f}"
            + (" (managed spot: usually less)" if params.sagemaker_use_spot else "")
        )
    else:
        group = train_node_group(req)
        instance = group.instance_types[0]
        nodes = params.workers if "mxnet" in params.frameworks else 1
        price = prices.EC2_HOUR.get(instance)
        if price is None:
            return [*lines, f"no price for {instance} in the table: add it to eksml/prices.py"]
        total += price * nodes * hours
        lines.append(f"{nodes} GPU node(s) {instance} x {hours:g} h x ${price}/h = ${price * nodes * hours:.2f}")
        if params.cluster == EPHEMERAL_CLUSTER:
            cpu = prices.EC2_HOUR.get(req.inference_instance_type, 0.0)
            total += (prices.EKS_CLUSTER_HOUR + cpu) * (hours + 0.5)
            lines.append(
                f"ephemeral cluster: control plane ${prices.EKS_CLUSTER_HOUR}/h + {req.inference_instance_type} "
                f"${cpu}/h for {hours + 0.5:g} h (creation and deletion included)"
            )
    lines.append(f"total about ${total:.2f} for {hours:g} h of training (S3, data transfer and logs not included)")
    return lines


# --- all of it --------------------------------------------------------------------------------
def run_preflight(
    settings: Settings,
    params: TrainingParams,
    *,
    clients: ClientFactory | None = None,
    lifecycle_clients: ClientFactory | None = None,
    hours: float = 1.0,
) -> Report:
    from eksml.cluster import iam
    from eksml.cluster.request import ClusterRequest, train_node_group, training_role_name
    from eksml.sagemaker.request import SageMakerRequestError, check_role_arn

    if settings.profile == "kubernetes":  # a cluster the user already has: none of AWS's checks apply
        from eksml.preflight_kubernetes import kubernetes_preflight

        report = kubernetes_preflight(settings)
        if params.trainer == "sagemaker":
            report.findings.append(
                Finding("trainer", ERROR, "the kubernetes profile trains on its cluster", "set trainer=kubernetes")
            )
        return report
    clients = clients or aws_clients(settings)
    report = Report()
    if settings.profile != "aws" or not settings.store_uri.startswith("s3://"):
        report.findings.append(
            Finding(
                "profile",
                ERROR,
                "preflight checks the aws profile with an s3:// store",
                "set EKSML_PROFILE=aws and EKSML_STORE_URI=s3://BUCKET/PREFIX",
            )
        )
        return report
    req = ClusterRequest.from_settings(settings)
    caller = clients("sts").get_caller_identity()
    account, pipeline_principal = caller["Account"], iam.principal_arn(caller["Arn"])
    report.findings += check_bucket(clients("s3"), settings)
    report.findings += check_bucket_encryption(clients("s3"), settings)
    report.findings += check_images(clients("ecr"), settings, images_needed(params))
    report.findings += check_image_pins(settings, images_needed(params))
    how = "attach the policy printed by: python -m eksml.cluster.eksctl iam {}"
    iam_client = clients("iam")
    role_arn = settings.sagemaker_role_arn
    if params.trainer == "sagemaker":
        try:
            check_role_arn(role_arn)
        except SageMakerRequestError as exc:
            report.findings.append(Finding("sagemaker role", ERROR, str(exc), "set EKSML_SAGEMAKER_ROLE_ARN"))
            role_arn = ""
    pipeline_doc = iam.pipeline_policy(
        settings.store_uri,
        settings.model_name,
        settings.region,
        sagemaker_role_arn=role_arn or f"arn:aws:iam::{account}:role/preflight-probe",
        cluster_name=settings.cluster_name,
        account_id=account,
        kms_key_arn=settings.store_kms_key_arn,
    )
    report.findings += check_permissions(
        iam_client, "pipeline", pipeline_principal, pipeline_doc, how.format("pipeline")
    )
    if params.trainer == "kubernetes" and params.cluster == EPHEMERAL_CLUSTER:
        lifecycle_principal = pipeline_principal
        if settings.lifecycle_aws_conn_id:
            from dataclasses import replace

            lifecycle_clients = lifecycle_clients or aws_clients(
                replace(settings, aws_conn_id=settings.lifecycle_aws_conn_id)
            )
            lifecycle_principal = iam.principal_arn(lifecycle_clients("sts").get_caller_identity()["Arn"])
        report.findings += check_lifecycle_permissions(iam_client, settings, lifecycle_principal, account)
    quotas = clients("service-quotas")
    if params.trainer == "sagemaker":
        if role_arn:
            doc = iam.sagemaker_execution_policy(
                settings.store_uri,
                settings.model_name,
                settings.region,
                account_id=account,
                kms_key_arn=settings.store_kms_key_arn,
            )
            report.findings += check_permissions(iam_client, "sagemaker", role_arn, doc, how.format("sagemaker"))
        report.findings += check_sagemaker_images(settings, params)
        report.findings += check_sagemaker_quota(
            quotas, params.sagemaker_instance_type, 1, params.sagemaker_use_spot, settings.region
        )
    else:
        report.findings += check_version(settings)
        training_role = iam.role_arn(account, training_role_name(req.name, req), settings.region)
        doc = iam.training_policy(
            settings.store_uri, settings.model_name, settings.region, kms_key_arn=settings.store_kms_key_arn
        )
        found = check_permissions(iam_client, "training", training_role, doc, how.format("training"))
        if params.cluster == EPHEMERAL_CLUSTER and found and "does not exist" in found[0].message:
            found = [Finding("permissions: training", OK, f"{training_role} is created with the ephemeral cluster")]
        report.findings += found
        group = train_node_group(req)
        nodes = max(params.workers if "mxnet" in params.frameworks else 1, 1)
        report.findings += check_ec2_quota(quotas, group.instance_types[0], nodes, group.spot, settings.region)
        if params.cluster == EPHEMERAL_CLUSTER:  # the run creates its cluster: every group's quota counts
            from eksml.cluster.request import build_cluster_configs

            report.findings += check_node_group_quotas(quotas, build_cluster_configs(req), settings.region)
    from eksml.preflight_integrations import check_integrations

    report.findings += check_integrations(settings, clients, existing=params.cluster == EXISTING_CLUSTER)
    report.estimate = estimate(settings, params, req, hours)
    return report


def main(argv: list[str] | None = None) -> int:
    """The command; an error ends in one line with its fix (``--debug``: the traceback)."""
    from eksml.cli import run

    return run(_main, argv)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eksml.preflight",
        description=__doc__.splitlines()[0],
        epilog="--debug: show the traceback of an error",
    )
    parser.add_argument("--trainer", choices=["kubernetes", "sagemaker"], default="kubernetes")
    parser.add_argument("--framework", choices=["tensorflow", "mxnet", "both"], default="tensorflow")
    parser.add_argument("--cluster", choices=CLUSTER_MODES, default=EXISTING_CLUSTER)
    parser.add_argument("--hours", type=float, default=1.0, help="training hours for the cost estimate")
    args = parser.parse_args(argv)
    params = validate_training_params(
        {
            "trainer": args.trainer,
            "framework": args.framework,
            **({"cluster": args.cluster} if args.trainer == "kubernetes" else {}),
        }
    )
    report = run_preflight(resolve_settings(), params, hours=args.hours)
    print(report.text())
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
