"""kubectl/kubernetes-client exec credential plugin for EKS: prints an ExecCredential.

Run by path (``python .../eks_token.py --cluster-name N --region R --sts-url U``) on every
token refresh, so it imports only botocore: the amazon provider's ``eks_get_token`` does
the same signing but importing it loads all of Airflow (seconds per refresh) and it
prints a line for its shell wrapper rather than ExecCredential JSON. The token is the
documented EKS one: a presigned STS GetCallerIdentity URL carrying the cluster name in
the ``x-k8s-aws-id`` header, base64url-encoded. Credentials come from the process
environment (the default AWS chain), or with ``--aws-conn-id`` from that Airflow AWS
connection, read at each refresh (this then imports Airflow, on a worker that has it).

The kubeconfigs that use it run this file's source with ``python -c``, so they name no path
of the machine that generated them.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from datetime import UTC, datetime, timedelta

API_VERSION = "client.authentication.k8s.io/v1"
#: Presigned STS URLs are valid 15 minutes; clients refresh a minute early.
TOKEN_LIFETIME = timedelta(minutes=14)


def _connection_credentials(aws_conn_id: str, region: str):
    """Credentials of an Airflow AWS connection; Airflow's logging kept off stdout."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        frozen = AwsBaseHook(aws_conn_id=aws_conn_id, region_name=region, client_type="sts").get_credentials()
    from botocore.credentials import Credentials

    return Credentials(frozen.access_key, frozen.secret_key, frozen.token)


def token_for(cluster_name: str, region: str, sts_url: str, aws_conn_id: str | None = None) -> str:
    import botocore.session
    from botocore.model import ServiceId
    from botocore.signers import RequestSigner

    session = botocore.session.get_session()
    credentials = _connection_credentials(aws_conn_id, region) if aws_conn_id else session.get_credentials()
    if credentials is None:
        raise SystemExit("no AWS credentials in the environment for the EKS token")
    signer = RequestSigner(ServiceId("EKS"), region, "sts", "v4", credentials, session.get_component("event_emitter"))
    url = signer.generate_presigned_url(
        {"method": "GET", "url": sts_url, "body": {}, "headers": {"x-k8s-aws-id": cluster_name}, "context": {}},
        region_name=region,
        expires_in=60,
        operation_name="",
    )
    return "k8s-aws-v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def exec_credential(cluster_name: str, region: str, sts_url: str, aws_conn_id: str | None = None) -> dict:
    expires = (datetime.now(UTC) + TOKEN_LIFETIME).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "kind": "ExecCredential",
        "apiVersion": API_VERSION,
        "spec": {},
        "status": {"expirationTimestamp": expires, "token": token_for(cluster_name, region, sts_url, aws_conn_id)},
    }


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster-name", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--sts-url", required=True)
    parser.add_argument("--aws-conn-id", default=None, help="sign with this Airflow AWS connection")
    args = parser.parse_args(argv)
    os.environ["AWS_STS_REGIONAL_ENDPOINTS"] = "regional"
    credential = exec_credential(args.cluster_name, args.region, args.sts_url, args.aws_conn_id)
    json.dump(credential, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
