"""The environment eksctl runs with: AWS credentials from an Airflow connection, nothing else.

eksctl reads credentials only from the standard AWS environment variables and files, so
the Airflow AWS connection's (possibly assumed-role, short-lived) credentials are handed
over as ``AWS_*`` variables of the child process; they never touch disk, argv or XCom.
With ``aws_conn_id=None`` the worker's own AWS environment (instance role, IRSA, profile)
is passed through instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: Non-AWS variables eksctl needs (HOME for its cache, proxies for egress).
_PASSTHROUGH = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
)


class CredentialsError(RuntimeError):
    """No usable AWS credentials for eksctl."""


def eksctl_environment(
    aws_conn_id: str | None, region: str, base: Mapping[str, str] | None = None
) -> tuple[dict[str, str], list[str]]:
    """Child environment for eksctl and the secret values a redactor must mask."""
    source = os.environ if base is None else base
    env = {k: source[k] for k in _PASSTHROUGH if k in source}
    secrets: list[str] = []
    if aws_conn_id is None:
        env.update({k: v for k, v in source.items() if k.startswith("AWS_")})
        secrets += [env[k] for k in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN") if env.get(k)]
    else:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        session = AwsBaseHook(aws_conn_id=aws_conn_id, region_name=region, client_type="sts").get_session()
        credentials = session.get_credentials()
        if credentials is None:
            raise CredentialsError(f"Airflow connection {aws_conn_id!r} yields no AWS credentials")
        frozen = credentials.get_frozen_credentials()
        env["AWS_ACCESS_KEY_ID"] = frozen.access_key
        env["AWS_SECRET_ACCESS_KEY"] = frozen.secret_key
        secrets.append(frozen.secret_key)
        if frozen.token:
            env["AWS_SESSION_TOKEN"] = frozen.token
            secrets.append(frozen.token)
    env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = region
    env["AWS_STS_REGIONAL_ENDPOINTS"] = "regional"
    return env, secrets
