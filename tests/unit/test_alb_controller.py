"""The AWS Load Balancer Controller as the add-ons step installs it: its chart rendering, vendored
with a checksum and no key material, filled with the cluster's values, and its webhook
certificate, made at install time and kept across runs until it is due."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import shutil

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from eksml.cluster import loadbalancer
from eksml.cluster.addons import ALB_CONTROLLER, AddonError, pinned_file
from eksml.cluster.loadbalancer import (
    CONTROLLER_MANIFEST,
    NAME,
    NAMESPACE,
    WEBHOOK_SECRET,
    WEBHOOK_SERVICE,
    controller_objects,
    load_balancer_objects,
    webhook_certificate,
)
from eksml.cluster.webhook_tls import RENEW_BEFORE, issue
from eksml.settings import Settings

VALUES = {
    "cluster": "eksml-serving",
    "region": "eu-central-1",
    "vpc_id": "vpc-0a1b2c3d4e5f60718",
    "node_role": "inference",
}
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def tls():
    return webhook_certificate(None, now=NOW)[0]


@pytest.fixture(scope="module")
def objects(tls):
    return controller_objects(**VALUES, tls=tls)


def _one(objects, kind):
    (obj,) = [o for o in objects if o["kind"] == kind]
    return obj


def _webhooks(objects):
    return [
        hook
        for o in objects
        if o["kind"] in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
        for hook in o["webhooks"]
    ]


def test_the_vendored_rendering_is_pinned_and_holds_no_key_material():
    text = pinned_file(ALB_CONTROLLER, CONTROLLER_MANIFEST).read_text()  # checksum verified
    assert not re.search(r"^kind: Secret$", text, re.MULTILINE)
    for material in ("BEGIN", "tls.key", "tls.crt", "ca.crt", "LS0tLS1CRUdJTi"):  # the last: base64 of "-----BEGIN"
        assert material not in text
    assert set(re.findall(r"^ *caBundle: (.*)$", text, re.MULTILINE)) == {"${WEBHOOK_CA_BUNDLE}"}
    assert set(re.findall(r"\$\{([A-Z_]+)\}", text)) == {
        "CLUSTER_NAME",
        "AWS_REGION",
        "VPC_ID",
        "NODE_ROLE",
        "WEBHOOK_CA_BUNDLE",
    }


def test_the_cluster_values_are_filled_and_the_project_keeps_its_own_account_and_class(objects):
    assert "${" not in json.dumps(objects)
    deployment = _one(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert {"--cluster-name=eksml-serving", "--aws-region=eu-central-1", "--aws-vpc-id=vpc-0a1b2c3d4e5f60718"} <= set(
        container["args"]
    )
    assert container["image"].endswith(f":{loadbalancer.ALB_CONTROLLER_VERSION}")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"role": "inference"}
    # The ServiceAccount the project makes with the IRSA role, not one of the chart's.
    (account,) = [
        o
        for o in load_balancer_objects(Settings(profile="aws"), "arn:aws:iam::1:role/x")
        if o["kind"] == "ServiceAccount"
    ]
    assert pod["serviceAccountName"] == account["metadata"]["name"] == NAME
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"ServiceAccount", "IngressClass", "IngressClassParams", "CustomResourceDefinition"}
    assert all(o["metadata"].get("namespace", NAMESPACE) == NAMESPACE for o in objects)


def test_the_webhooks_trust_the_ca_of_the_secret_the_deployment_mounts(objects, tls):
    secret = objects[0]  # first: the Deployment's volume exists when its pods start
    assert (secret["kind"], secret["metadata"]["name"], secret["type"]) == (
        "Secret",
        WEBHOOK_SECRET,
        "kubernetes.io/tls",
    )
    volumes = _one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {v["secret"]["secretName"] for v in volumes if "secret" in v} == {WEBHOOK_SECRET}
    hooks = _webhooks(objects)
    assert len(hooks) == 8
    assert {h["clientConfig"]["caBundle"] for h in hooks} == {secret["data"]["ca.crt"]} == {tls.ca_bundle}
    assert {h["clientConfig"]["service"]["name"] for h in hooks} == {_one(objects, "Service")["metadata"]["name"]}
    assert _one(objects, "Service")["metadata"]["name"] == WEBHOOK_SERVICE
    # The serving certificate: for the Service's name, signed by that CA, with the Secret's key.
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    key = serialization.load_pem_private_key(base64.b64decode(secret["data"]["tls.key"]), password=None)
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert f"{WEBHOOK_SERVICE}.{NAMESPACE}.svc" in names
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(serialization.Encoding.DER, spki) == cert.public_key().public_bytes(
        serialization.Encoding.DER, spki
    )
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_no_service_mutator_webhook_makes_every_service_depend_on_the_controller(objects):
    rules = [rule for hook in _webhooks(objects) for rule in hook["rules"]]
    assert not [r for r in rules if "services" in r["resources"]]


def test_a_changed_rendering_is_refused(tmp_path, monkeypatch, tls):
    for path in ALB_CONTROLLER.parent.iterdir():
        shutil.copy(path, tmp_path / path.name)
    monkeypatch.setattr(loadbalancer, "ALB_CONTROLLER", tmp_path / ALB_CONTROLLER.name)
    assert controller_objects(**VALUES, tls=tls)
    with (tmp_path / CONTROLLER_MANIFEST).open("a") as f:
        f.write("\n# edited\n")
    with pytest.raises(AddonError, match="does not match its pinned SHA-256"):
        controller_objects(**VALUES, tls=tls)


def test_a_cluster_without_a_value_is_refused(tls):
    with pytest.raises(AddonError, match="no value for VPC_ID"):
        loadbalancer.substitute(
            pinned_file(ALB_CONTROLLER, CONTROLLER_MANIFEST).read_text(),
            {"CLUSTER_NAME": "c", "AWS_REGION": "r", "NODE_ROLE": "n", "WEBHOOK_CA_BUNDLE": tls.ca_bundle},
            CONTROLLER_MANIFEST,
        )


def test_the_secret_in_the_cluster_is_kept_on_a_rerun(objects, tls):
    as_read = {**objects[0], "metadata": {**objects[0]["metadata"], "resourceVersion": "42"}}
    kept, was_kept = webhook_certificate(as_read, now=NOW + dt.timedelta(days=365))
    assert was_kept and kept == tls
    assert controller_objects(**VALUES, tls=kept)[0]["data"] == objects[0]["data"]  # the same apply again


def test_a_certificate_due_within_30_days_is_replaced(objects, tls):
    due = tls.not_after() - RENEW_BEFORE
    assert webhook_certificate(objects[0], now=due - dt.timedelta(days=1)) == (tls, True)
    renewed, was_kept = webhook_certificate(objects[0], now=due + dt.timedelta(days=1))
    assert not was_kept and renewed.ca_pem != tls.ca_pem and renewed.key_pem != tls.key_pem
    assert renewed.not_after() > tls.not_after()


@pytest.mark.parametrize(
    "broken",
    [
        "missing",
        "no key",
        "not base64",
        "other names",
        "other CA",
        "other key",
    ],
)
def test_a_secret_that_cannot_serve_the_webhook_is_replaced(objects, tls, broken):
    data = dict(objects[0]["data"])
    other = issue(("elsewhere.default.svc",), common_name="other", now=NOW)
    b64 = lambda pem: base64.b64encode(pem).decode()  # noqa: E731
    if broken == "no key":
        del data["tls.key"]
    elif broken == "not base64":
        data["tls.crt"] = "%%%"
    elif broken == "other names":
        data = {"ca.crt": b64(other.ca_pem), "tls.crt": b64(other.cert_pem), "tls.key": b64(other.key_pem)}
    elif broken == "other CA":
        data["ca.crt"] = b64(other.ca_pem)
    elif broken == "other key":
        data["tls.key"] = b64(other.key_pem)
    secret = None if broken == "missing" else {**objects[0], "data": data}
    made, was_kept = webhook_certificate(secret, now=NOW)
    assert not was_kept and made.ca_pem not in (tls.ca_pem, other.ca_pem)
