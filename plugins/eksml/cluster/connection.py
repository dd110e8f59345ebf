"""Kubernetes access to an EKS cluster built from the EKS API, so nobody pastes a kubeconfig.

``DescribeCluster`` gives the endpoint and CA; the bearer token is signed locally from AWS
credentials by :mod:`eksml.cluster.eks_token` (run as a kubeconfig ``exec``
plugin, so every API client refreshes it before its 15 minutes run out).

Two forms:

* :func:`build_kubernetes_connection` - an Airflow ``kubernetes`` connection holding no
  secret and no path of the machine that made it (server, CA, and an exec command that runs
  the token signer's source with the worker's ``python``); the token is signed at each
  refresh with the credentials of the Airflow AWS connection it names. Export it with
  ``python -m eksml.cluster connection`` as ``AIRFLOW_CONN_<ID>``.
* :func:`eks_kubernetes_hook` - an in-memory :class:`KubernetesHook` for a task, signed
  with the credentials of an Airflow AWS connection (handed to the exec plugin through
  its environment, never written to disk).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eksml.cluster.eks_token import API_VERSION
from eksml.errors import ServiceError

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from airflow.sdk import Connection

#: The token signer's source, run with ``python -c`` (no file path in any kubeconfig).
TOKEN_SOURCE = Path(__file__).with_name("eks_token.py").read_text()
USER = "eksml"


class ClusterNotReadyError(ServiceError):
    """The cluster does not exist or is not ACTIVE (no usable endpoint yet)."""


@dataclass(frozen=True)
class ClusterEndpoint:
    """What a Kubernetes client needs to reach and authenticate to one EKS cluster."""

    name: str
    region: str
    server: str
    certificate_authority: str
    sts_url: str


@contextlib.contextmanager
def _regional_sts() -> Iterator[None]:
    """EKS accepts tokens signed for the regional STS endpoint only."""
    previous = os.environ.get("AWS_STS_REGIONAL_ENDPOINTS")
    os.environ["AWS_STS_REGIONAL_ENDPOINTS"] = "regional"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("AWS_STS_REGIONAL_ENDPOINTS", None)
        else:
            os.environ["AWS_STS_REGIONAL_ENDPOINTS"] = previous


def describe_endpoint(cluster_name: str, region: str, aws_conn_id: str | None) -> ClusterEndpoint:
    """Endpoint, CA and STS URL of an ACTIVE cluster, from the EKS API."""
    from airflow.providers.amazon.aws.hooks.eks import EksHook
    from airflow.providers.amazon.aws.hooks.sts import StsHook
    from botocore.exceptions import ClientError

    try:
        cluster = EksHook(aws_conn_id=aws_conn_id, region_name=region).describe_cluster(name=cluster_name)["cluster"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise ClusterNotReadyError(f"cluster {cluster_name!r} does not exist in {region}") from exc
        raise
    if cluster.get("status") != "ACTIVE" or not cluster.get("endpoint"):
        raise ClusterNotReadyError(f"cluster {cluster_name!r} is {cluster.get('status')}, not ACTIVE")
    with _regional_sts():
        sts = StsHook(aws_conn_id=aws_conn_id, region_name=region).conn_client_meta.endpoint_url
    return ClusterEndpoint(
        name=cluster_name,
        region=region,
        server=cluster["endpoint"],
        certificate_authority=cluster["certificateAuthority"]["data"],
        sts_url=f"{sts}/?Action=GetCallerIdentity&Version=2011-06-15",
    )


def build_kubeconfig(
    endpoint: ClusterEndpoint,
    *,
    namespace: str | None = None,
    exec_env: dict[str, str] | None = None,
    sign_with_connection: str | None = None,
    python: str | None = None,
) -> dict[str, Any]:
    """A kubeconfig whose user is the token exec plugin.

    ``python``: the interpreter that runs it (default this one; ``"python"`` for a kubeconfig
    that travels to other machines). ``sign_with_connection``: an Airflow AWS connection the
    plugin reads at each refresh; else it signs with ``exec_env`` or its process's AWS identity.
    """
    args = [
        "-c",
        TOKEN_SOURCE,
        "--cluster-name",
        endpoint.name,
        "--region",
        endpoint.region,
        "--sts-url",
        endpoint.sts_url,
    ]
    if sign_with_connection:
        args += ["--aws-conn-id", sign_with_connection]
    exec_config: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "command": python or sys.executable,
        "args": args,
        "interactiveMode": "Never",
    }
    if exec_env:
        exec_config["env"] = [{"name": k, "value": v} for k, v in exec_env.items()]
    context: dict[str, Any] = {"cluster": endpoint.name, "user": USER}
    if namespace:
        context["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": endpoint.name,
                "cluster": {"server": endpoint.server, "certificate-authority-data": endpoint.certificate_authority},
            }
        ],
        "users": [{"name": USER, "user": {"exec": exec_config}}],
        "contexts": [{"name": endpoint.name, "context": context}],
        "current-context": endpoint.name,
    }


def build_kubernetes_connection(
    cluster_name: str,
    region: str,
    *,
    conn_id: str,
    namespace: str | None = None,
    aws_conn_id: str | None,
) -> Connection:
    """An Airflow ``kubernetes`` connection for the cluster; no credentials, no local paths.

    Its token is signed at each refresh with the credentials of ``aws_conn_id`` as the worker
    that uses it resolves that connection (``None``: the worker's own AWS identity).
    """
    from airflow.sdk import Connection

    kubeconfig = build_kubeconfig(
        describe_endpoint(cluster_name, region, aws_conn_id),
        namespace=namespace,
        sign_with_connection=aws_conn_id,
        python="python",
    )
    extra: dict[str, Any] = {"kube_config": kubeconfig}
    if namespace:
        extra["namespace"] = namespace
    return Connection(conn_id=conn_id, conn_type="kubernetes", extra=json.dumps(extra))


def connection_env(conn: Connection) -> tuple[str, str]:
    """``(AIRFLOW_CONN_<ID>, JSON)`` - the environment variable form Airflow reads."""
    value = json.dumps({"conn_type": conn.conn_type, "extra": conn.extra_dejson})
    return f"AIRFLOW_CONN_{conn.conn_id.upper()}", value


def _credentials_env(aws_conn_id: str | None, region: str) -> dict[str, str]:
    from eksml.cluster.hooks import eksctl_environment

    env, _ = eksctl_environment(aws_conn_id, region, base={})
    return {k: v for k, v in env.items() if k.startswith("AWS_")}


def eks_kubeconfig(
    cluster_name: str, region: str, *, aws_conn_id: str | None, namespace: str | None = None
) -> dict[str, Any]:
    """A kubeconfig for the cluster whose token is signed with the Airflow AWS connection's credentials.

    Built in memory by the process that uses it (the credentials go to the exec plugin's
    environment, never to disk or to a connection).
    """
    endpoint = describe_endpoint(cluster_name, region, aws_conn_id)
    env = _credentials_env(aws_conn_id, region) if aws_conn_id else None
    return build_kubeconfig(endpoint, namespace=namespace, exec_env=env)


def eks_kubernetes_hook(
    cluster_name: str, region: str, *, aws_conn_id: str | None, namespace: str | None = None
) -> KubernetesHook:
    """A KubernetesHook for the cluster, authenticated as the Airflow AWS connection."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    config = eks_kubeconfig(cluster_name, region, aws_conn_id=aws_conn_id, namespace=namespace)
    # conn_id and kubernetes_conn_id None: use only this config, never kubernetes_default.
    return KubernetesHook(conn_id=None, kubernetes_conn_id=None, config_dict=config)
