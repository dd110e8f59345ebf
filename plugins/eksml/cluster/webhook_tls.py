"""The serving certificate of an admission webhook a vendored controller runs, made at install time.

A Helm chart makes its webhook's CA and key pair when it is rendered (``genCA``); a vendored
rendering would then carry one private key for every cluster, in the repository. Here the
add-ons step makes a CA and a serving certificate for the webhook's Service, puts them in the
``kubernetes.io/tls`` Secret the controller mounts and the CA in the webhooks' ``caBundle``.
A later run reads the Secret back and keeps it (the running controller keeps serving with the
same key); only a Secret that is missing, unreadable, for other names, or that expires within
:data:`RENEW_BEFORE` is replaced.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Validity of a new CA and serving certificate (the chart's ``genCA``/``genSignedCert``: 3650 days).
VALIDITY = dt.timedelta(days=3650)
#: A certificate that ends sooner than this is replaced when the add-ons step runs.
RENEW_BEFORE = dt.timedelta(days=30)
#: The keys of a ``kubernetes.io/tls`` Secret, plus the CA the chart's Secret carries.
CA_KEY, CERT_KEY, KEY_KEY = "ca.crt", "tls.crt", "tls.key"


@dataclass(frozen=True)
class WebhookTLS:
    """A CA certificate and the serving certificate and key it signed, all PEM."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @property
    def ca_bundle(self) -> str:
        """The CA as a webhook's ``clientConfig.caBundle`` takes it (base64 of the PEM)."""
        return base64.b64encode(self.ca_pem).decode()

    def not_after(self) -> dt.datetime:
        """When the first of the CA and the serving certificate expires (UTC)."""
        from cryptography import x509

        ca = x509.load_pem_x509_certificate(self.ca_pem)
        cert = x509.load_pem_x509_certificate(self.cert_pem)
        return min(ca.not_valid_after_utc, cert.not_valid_after_utc)

    def secret(self, name: str, namespace: str, labels: Mapping[str, str]) -> dict[str, Any]:
        """The ``kubernetes.io/tls`` Secret the controller's Deployment mounts."""
        data = {CA_KEY: self.ca_pem, CERT_KEY: self.cert_pem, KEY_KEY: self.key_pem}
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "type": "kubernetes.io/tls",
            "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
        }


def dns_names(service: str, namespace: str, domain: str = "cluster.local") -> tuple[str, ...]:
    """The names a Service's webhook is called by (the chart's ``altNames``)."""
    return (f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.{domain}")


def issue(names: tuple[str, ...], *, common_name: str, now: dt.datetime | None = None) -> WebhookTLS:
    """A new CA (ECDSA P-256) and a serving certificate for ``names`` signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    start = (now or dt.datetime.now(dt.timezone.utc)) - dt.timedelta(minutes=5)  # clock skew
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name}-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + VALIDITY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return WebhookTLS(
        ca_pem=ca.public_bytes(pem),
        cert_pem=cert.public_bytes(pem),
        key_pem=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


def from_secret(secret: Mapping[str, Any] | None, names: tuple[str, ...]) -> WebhookTLS | None:
    """The certificate a Secret (as read from the API) holds, if it serves ``names``: its key
    matches the certificate, which its CA signed; ``None`` for anything else."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization

    data = (secret or {}).get("data") or {}
    try:
        tls = WebhookTLS(*(base64.b64decode(data[key]) for key in (CA_KEY, CERT_KEY, KEY_KEY)))
        ca = x509.load_pem_x509_certificate(tls.ca_pem)
        cert = x509.load_pem_x509_certificate(tls.cert_pem)
        key = serialization.load_pem_private_key(tls.key_pem, password=None)
        cert.verify_directly_issued_by(ca)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        served = set(sans.get_values_for_type(x509.DNSName))
    except (KeyError, TypeError, ValueError, InvalidSignature, x509.ExtensionNotFound):
        return None
    same_key = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return tls if same_key and set(names) <= served else None


def kept_or_issued(
    secret: Mapping[str, Any] | None, names: tuple[str, ...], *, common_name: str, now: dt.datetime | None = None
) -> tuple[WebhookTLS, bool]:
    """The Secret's certificate when it serves ``names`` for longer than :data:`RENEW_BEFORE`,
    else a new one; and whether it was kept."""
    moment = now or dt.datetime.now(dt.timezone.utc)
    current = from_secret(secret, names)
    if current is not None and current.not_after() - moment > RENEW_BEFORE:
        return current, True
    return issue(names, common_name=common_name, now=moment), False
