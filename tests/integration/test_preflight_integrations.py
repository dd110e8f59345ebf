"""Preflight of the production integrations against a moto server (EC2 subnets and route
tables, ACM, Cognito, ELBv2, EKS), a real TCP listener for the API endpoint, and a recorded
Service Quotas answer (moto has no ELB quota: botocore's Stubber, checked against the model)."""

from __future__ import annotations

import datetime
import socket

import boto3
import pytest
from botocore.stub import Stubber

from eksml.preflight import ERROR, OK
from eksml.preflight_integrations import (
    ALB_QUOTA_CODE,
    check_api_access,
    check_certificate,
    check_cognito,
    check_endpoint_reachable,
    check_integrations,
    check_load_balancer_quota,
    check_private_subnets,
    covers,
)
from eksml.settings import Settings

REGION = "us-west-2"


def _levels(findings) -> list[str]:
    return [f.level for f in findings]


@pytest.fixture(scope="module")
def network(moto_client):
    ec2 = moto_client("ec2", REGION)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    public = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.0.0/24")["Subnet"]["SubnetId"]
    private = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    ec2.associate_route_table(RouteTableId=table, SubnetId=public)
    return ec2, public, private, igw


def test_private_subnets_pass_and_a_public_one_is_named(network):
    ec2, public, private, igw = network
    assert _levels(check_private_subnets(ec2, (private,))) == [OK]
    (finding,) = check_private_subnets(ec2, (public,))
    assert finding.level == ERROR and f"routes 0.0.0.0/0 to {igw}" in finding.message
    (missing,) = check_private_subnets(ec2, ("subnet-0123456789abcdef0",))
    assert missing.level == ERROR


def test_api_endpoint_reachability_before_anything_is_created(moto_client):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        assert _levels(check_endpoint_reachable(f"https://127.0.0.1:{port}")) == [OK]
    (closed,) = check_endpoint_reachable(f"https://127.0.0.1:{port}", timeout=2.0)
    assert closed.level == ERROR and "api_public_cidrs" in closed.fix

    private_new_vpc = Settings(profile="aws", cluster_name="not-made-yet")
    (finding,) = check_api_access(private_new_vpc, existing=True, eks=moto_client("eks", REGION))
    assert finding.level == ERROR and "private to a new VPC" in finding.message
    public = private_new_vpc.replace(api_public_access=True, api_public_cidrs=("203.0.113.0/24",))
    assert _levels(check_api_access(public, existing=False)) == [OK]
    in_vpc = private_new_vpc.replace(private_subnets=("subnet-0123456789abcdef0",))
    assert _levels(check_api_access(in_vpc, existing=False)) == [OK]


def _self_signed(names: list[str]) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), pem_key


def test_certificate_must_exist_be_issued_and_cover_the_host(moto_client):
    acm = moto_client("acm", REGION)
    cert, key = _self_signed(["*.models.example.com"])
    arn = acm.import_certificate(Certificate=cert, PrivateKey=key)["CertificateArn"]
    assert _levels(check_certificate(acm, arn, "api.models.example.com")) == [OK]
    (wrong_host,) = check_certificate(acm, arn, "models.other.com")
    assert wrong_host.level == ERROR and "not models.other.com" in wrong_host.message
    (missing,) = check_certificate(acm, arn.rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000", "x.y")
    assert missing.level == ERROR
    assert covers(["*.example.com"], "a.example.com") and not covers(["*.example.com"], "a.b.example.com")


def test_cognito_pool_client_and_domain_must_belong_together(moto_client):
    cognito = moto_client("cognito-idp", REGION)
    pool = cognito.create_user_pool(PoolName="eksml")["UserPool"]
    other = cognito.create_user_pool(PoolName="other")["UserPool"]
    client_id = cognito.create_user_pool_client(UserPoolId=pool["Id"], ClientName="alb", GenerateSecret=True)[
        "UserPoolClient"
    ]["ClientId"]
    cognito.create_user_pool_domain(Domain="eksml-login", UserPoolId=pool["Id"])
    cognito.create_user_pool_domain(Domain="other-login", UserPoolId=other["Id"])
    assert _levels(check_cognito(cognito, pool["Arn"], client_id, "eksml-login")) == [OK]
    (foreign,) = check_cognito(cognito, pool["Arn"], client_id, "other-login")
    assert foreign.level == ERROR and "does not belong" in foreign.message
    (no_client,) = check_cognito(cognito, pool["Arn"], "nosuchclient", "eksml-login")
    assert no_client.level == ERROR


def _quota(value: float) -> boto3.client:
    quotas = boto3.client("service-quotas", region_name=REGION, aws_access_key_id="k", aws_secret_access_key="s")
    stub = Stubber(quotas)
    stub.add_response(
        "get_service_quota",
        {"Quota": {"ServiceCode": "elasticloadbalancing", "QuotaCode": ALB_QUOTA_CODE, "Value": value}},
        {"ServiceCode": "elasticloadbalancing", "QuotaCode": ALB_QUOTA_CODE},
    )
    stub.activate()
    return quotas


def test_one_more_load_balancer_must_fit_the_quota(moto_client, network):
    ec2, public, private, _igw = network
    elbv2 = moto_client("elbv2", REGION)
    other = ec2.create_subnet(
        VpcId=ec2.describe_subnets(SubnetIds=[private])["Subnets"][0]["VpcId"],
        CidrBlock="10.20.2.0/24",
        AvailabilityZone="us-west-2b",
    )["Subnet"]["SubnetId"]
    elbv2.create_load_balancer(Name="existing-alb", Subnets=[private, other], Scheme="internal", Type="application")
    used = sum(1 for lb in elbv2.describe_load_balancers()["LoadBalancers"] if lb["Type"] == "application")
    assert _levels(check_load_balancer_quota(_quota(used + 1), elbv2, REGION)) == [OK]
    (full,) = check_load_balancer_quota(_quota(used), elbv2, REGION)
    assert full.level == ERROR and ALB_QUOTA_CODE in full.fix


def test_nothing_is_asked_of_aws_for_integrations_that_are_off():
    asked: list[str] = []

    def clients(service: str):
        asked.append(service)
        raise AssertionError(f"{service} must not be called")

    public = Settings(profile="aws", api_public_access=True, api_public_cidrs=("203.0.113.0/24",))
    assert _levels(check_integrations(public, clients, existing=False)) == [OK]
    assert asked == []
