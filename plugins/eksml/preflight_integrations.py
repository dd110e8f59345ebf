"""Preflight of the production integrations: what AWS would refuse, or what would leave the
cluster unreachable, checked before anything is created (``eksml.preflight`` adds these).

* the Kubernetes API: reachable by Airflow's workers (an existing cluster: a TCP connection to
  its endpoint; a cluster to be made: a private-only endpoint needs the subnets of the
  workers' VPC, a public one its CIDR list);
* ``private_subnets``: each exists and is private (its route table sends 0.0.0.0/0 to no
  internet gateway);
* the ingress: the ACM certificate exists, is issued and covers ``ingress_host``; the Cognito
  user pool, its app client and its domain exist and belong together; one more Application
  Load Balancer fits the account's quota.

Every finding names its fix.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from eksml.preflight_findings import ERROR, OK, WARNING, ClientFactory, Finding, error_code
from eksml.settings import Settings

#: Service Quotas code of "Application Load Balancers per Region" (service code elasticloadbalancing).
ALB_QUOTA_CODE = "L-53DA6B97"
Connect = Callable[[tuple[str, int], float], Any]


def _aws_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return ClientError, BotoCoreError


# --- the API endpoint --------------------------------------------------------------------------------
def check_endpoint_reachable(
    endpoint: str, connect: Connect = socket.create_connection, timeout: float = 5.0
) -> list[Finding]:
    """A TCP connection from here (an Airflow worker) to the cluster's API endpoint."""
    url = urlparse(endpoint)
    host, port = url.hostname or "", url.port or 443
    fix = (
        "run Airflow's workers in the cluster's VPC (or a peered one, or over a VPN), or turn on "
        "api_public_access with the workers' egress CIDRs in api_public_cidrs"
    )
    try:
        connection = connect((host, port), timeout)
    except OSError as exc:
        return [Finding("api endpoint", ERROR, f"cannot reach {host}:{port} from this worker ({exc})", fix)]
    connection.close()
    return [Finding("api endpoint", OK, f"{host}:{port} is reachable from this worker")]


def check_api_access(
    settings: Settings, *, existing: bool, eks: Any = None, connect: Connect = socket.create_connection
) -> list[Finding]:
    """Whether Airflow's workers will reach the cluster's API, before anything is created."""
    if existing:
        try:
            cluster = eks.describe_cluster(name=settings.cluster_name)["cluster"]
        except _aws_errors() as exc:
            if error_code(exc) == "ResourceNotFoundException":  # the eks_cluster DAG makes it: as for a new one
                return check_api_access(settings, existing=False)
            return [
                Finding("api endpoint", WARNING, f"cannot describe cluster {settings.cluster_name}: {error_code(exc)}")
            ]
        return check_endpoint_reachable(cluster["endpoint"], connect)
    if settings.api_public_access:
        return [
            Finding(
                "api endpoint",
                OK,
                f"public API access from {', '.join(settings.api_public_cidrs)} only (and private access in the VPC); "
                "Airflow's workers must send from one of these",
            )
        ]
    if not settings.private_subnets:
        return [
            Finding(
                "api endpoint",
                ERROR,
                "the Kubernetes API would be private to a new VPC that Airflow's workers are not in",
                "set private_subnets to private subnets of the workers' VPC, or api_public_access=true with "
                "api_public_cidrs listing the workers' egress addresses (docs/aws.md: Production integrations)",
            )
        ]
    return [Finding("api endpoint", OK, "private API endpoint in the VPC of private_subnets")]


def check_private_subnets(ec2: Any, subnets: tuple[str, ...]) -> list[Finding]:
    """Each subnet exists, and its route table (explicit, else the VPC's main one) sends nothing
    to an internet gateway."""
    if not subnets:
        return []
    fix = "list private subnets only (egress through a NAT gateway, no route to an internet gateway)"
    try:
        found = {s["SubnetId"]: s for s in ec2.describe_subnets(SubnetIds=list(subnets))["Subnets"]}
    except _aws_errors() as exc:
        return [Finding("subnets", ERROR, f"cannot describe {', '.join(subnets)}: {error_code(exc)}", fix)]
    findings = []
    for subnet_id in subnets:
        subnet = found.get(subnet_id)
        if subnet is None:
            findings.append(Finding("subnets", ERROR, f"{subnet_id} does not exist", fix))
            continue
        tables = ec2.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}])
        chosen = (
            tables["RouteTables"]
            or ec2.describe_route_tables(
                Filters=[
                    {"Name": "vpc-id", "Values": [subnet["VpcId"]]},
                    {"Name": "association.main", "Values": ["true"]},
                ]
            )["RouteTables"]
        )
        gateways = [
            route.get("GatewayId", "")
            for table in chosen
            for route in table.get("Routes", [])
            if route.get("DestinationCidrBlock") == "0.0.0.0/0" and route.get("GatewayId", "").startswith("igw-")
        ]
        if gateways or subnet.get("MapPublicIpOnLaunch"):
            why = f"routes 0.0.0.0/0 to {gateways[0]}" if gateways else "gives instances public addresses"
            findings.append(Finding("subnets", ERROR, f"{subnet_id} is public: it {why}", fix))
        else:
            findings.append(Finding("subnets", OK, f"{subnet_id} is private (VPC {subnet['VpcId']})"))
    return findings


# --- the ingress ------------------------------------------------------------------------------
def covers(names: list[str], host: str) -> bool:
    """Whether a certificate for ``names`` is valid for ``host`` (a wildcard covers one label)."""
    host = host.lower().rstrip(".")
    for name in (n.lower().rstrip(".") for n in names):
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def check_certificate(acm: Any, arn: str, host: str) -> list[Finding]:
    fix = (
        f"request or import a certificate for {host or 'the ingress host'} in ACM in this region, "
        "and set ingress_certificate_arn"
    )
    try:
        cert = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    except _aws_errors() as exc:
        return [Finding("certificate", ERROR, f"{arn}: {error_code(exc) or exc}", fix)]
    if cert.get("Status") != "ISSUED":
        return [Finding("certificate", ERROR, f"{arn} is {cert.get('Status')}, not ISSUED", fix)]
    names = [cert.get("DomainName", ""), *cert.get("SubjectAlternativeNames", [])]
    if host and not covers(names, host):
        return [Finding("certificate", ERROR, f"{arn} covers {', '.join(sorted(set(names)))}, not {host}", fix)]
    return [Finding("certificate", OK, f"{arn} is issued" + (f" and covers {host}" if host else ""))]


def check_cognito(cognito: Any, pool_arn: str, client_id: str, domain: str) -> list[Finding]:
    pool_id = pool_arn.rsplit("/", 1)[-1]
    fix = "create the user pool, an app client with a secret, and a domain prefix; set ingress_cognito_*"
    try:
        cognito.describe_user_pool(UserPoolId=pool_id)
        cognito.describe_user_pool_client(UserPoolId=pool_id, ClientId=client_id)
        described = cognito.describe_user_pool_domain(Domain=domain)["DomainDescription"]
    except _aws_errors() as exc:
        return [Finding("cognito", ERROR, f"user pool {pool_id} / client {client_id}: {error_code(exc) or exc}", fix)]
    if described.get("UserPoolId") != pool_id:
        return [Finding("cognito", ERROR, f"domain {domain!r} does not belong to user pool {pool_id}", fix)]
    return [Finding("cognito", OK, f"user pool {pool_id}, its client and domain {domain!r} exist")]


def check_load_balancer_quota(quotas: Any, elbv2: Any, region: str) -> list[Finding]:
    fix = (
        f"delete unused load balancers or request more (aws service-quotas request-service-quota-increase "
        f"--service-code elasticloadbalancing --quota-code {ALB_QUOTA_CODE} --region {region})"
    )
    try:
        limit = quotas.get_service_quota(ServiceCode="elasticloadbalancing", QuotaCode=ALB_QUOTA_CODE)["Quota"]["Value"]
        pages = elbv2.get_paginator("describe_load_balancers").paginate()
        used = sum(1 for page in pages for lb in page["LoadBalancers"] if lb.get("Type") == "application")
    except _aws_errors() as exc:
        return [Finding("quota: alb", WARNING, f"cannot read the ALB quota or count: {error_code(exc) or exc}", fix)]
    if used + 1 > limit:
        return [Finding("quota: alb", ERROR, f"{used} of {limit:g} Application Load Balancers in use", fix)]
    return [Finding("quota: alb", OK, f"{used} of {limit:g} Application Load Balancers in use")]


def check_integrations(
    settings: Settings, clients: ClientFactory, *, existing: bool, connect: Connect = socket.create_connection
) -> list[Finding]:
    """Every check the settings call for, in the order a person would fix them."""
    findings = check_api_access(settings, existing=existing, eks=clients("eks") if existing else None, connect=connect)
    findings += check_private_subnets(clients("ec2"), settings.private_subnets) if settings.private_subnets else []
    if settings.ingress:
        if settings.ingress_tls:
            findings += check_certificate(clients("acm"), settings.ingress_certificate_arn, settings.ingress_host)
        if settings.ingress_auth == "cognito":
            findings += check_cognito(
                clients("cognito-idp"),
                settings.ingress_cognito_user_pool_arn,
                settings.ingress_cognito_client_id,
                settings.ingress_cognito_domain,
            )
        findings += check_load_balancer_quota(clients("service-quotas"), clients("elbv2"), settings.region)
    return findings
