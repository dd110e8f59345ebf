"""Preflight of the kubernetes profile: the cluster and the store answer before anything starts.

The aws profile's preflight asks AWS (IAM, ECR, quotas, EKS versions); a cluster the user
already has needs none of that, only three facts, each checked in seconds by the first task of
a run (a missing or unreachable connection otherwise surfaces minutes later, mid-run):

* the Airflow connection ``kubernetes_conn_id`` exists and is of type ``kubernetes``;
* its API server answers, and the identity may list pods in the training and serving
  namespaces (what every workload task needs first; a 403 there means the project's
  namespaces and Roles were not applied, or the identity is not bound to them);
* the store's bucket answers through the Airflow AWS connection (its ``endpoint_url``).
"""

from __future__ import annotations

from typing import Any

from eksml.preflight_findings import ERROR, OK, Finding, Report
from eksml.settings import Settings

#: Seconds each API call may take: an address that does not answer fails the run at once.
REQUEST_TIMEOUT_S = 10


def _connection(settings: Settings) -> tuple[list[Finding], Any]:
    from airflow.sdk import BaseHook

    conn_id = settings.kubernetes_conn_id
    fix = (
        f'define it: AIRFLOW_CONN_{conn_id.upper()}=\'{{"conn_type": "kubernetes", "extra": '
        '{"kube_config_path": "/path/to/kubeconfig"}}\' or `airflow connections add`'
    )
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:  # AirflowNotFoundException, or a secrets backend that failed
        return [Finding("kubernetes connection", ERROR, f"connection {conn_id!r} not found ({exc})", fix)], None
    if conn.conn_type != "kubernetes":
        message = f"connection {conn_id!r} is of type {conn.conn_type!r}, not kubernetes"
        return [Finding("kubernetes connection", ERROR, message, fix)], None
    return [Finding("kubernetes connection", OK, f"connection {conn_id!r} defined")], conn


def check_cluster(settings: Settings) -> list[Finding]:
    """The connection, the API server behind it, and the pipeline identity's access to both namespaces."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from kubernetes import client

    findings, conn = _connection(settings)
    if conn is None:
        return findings
    conn_id = settings.kubernetes_conn_id
    try:
        api = KubernetesHook(conn_id=conn_id).api_client
        version = client.VersionApi(api).get_code(_request_timeout=REQUEST_TIMEOUT_S)
    except Exception as exc:  # an unreadable kubeconfig, a refused connection, a TLS or auth failure
        host = getattr(getattr(locals().get("api"), "configuration", None), "host", "?")
        return [
            *findings,
            Finding(
                "kubernetes cluster",
                ERROR,
                f"the API server of connection {conn_id!r} ({host}) did not answer: {type(exc).__name__}: "
                f"{str(exc)[:300]}",
                "start the cluster, or fix the connection's kubeconfig (server address, certificates, credentials)",
            ),
        ]
    findings.append(
        Finding("kubernetes cluster", OK, f"{api.configuration.host} answers (Kubernetes {version.git_version})")
    )
    core = client.CoreV1Api(api)
    for namespace in dict.fromkeys((settings.namespace, settings.inference_namespace)):
        try:
            core.list_namespaced_pod(namespace, limit=1, _request_timeout=REQUEST_TIMEOUT_S)
        except client.ApiException as exc:
            findings.append(
                Finding(
                    f"namespace {namespace}",
                    ERROR,
                    f"connection {conn_id!r} may not list pods in {namespace} (HTTP {exc.status} {exc.reason})",
                    "apply the project's namespaces, service accounts and Roles as cluster admin "
                    "(make render: the files 01- to 12- of build/aws, for kubectl apply -f), "
                    "and bind the connection's identity to them",
                )
            )
            continue
        findings.append(Finding(f"namespace {namespace}", OK, "pods can be listed"))
    return findings


def check_store(settings: Settings) -> list[Finding]:
    """The store's bucket answers through the Airflow AWS connection (any S3-compatible endpoint)."""
    from urllib.parse import urlparse

    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    bucket = urlparse(settings.store_uri).netloc
    hook = S3Hook(aws_conn_id=settings.aws_conn_id)
    try:
        s3 = hook.get_conn()
        s3.head_bucket(Bucket=bucket)
    except Exception as exc:  # no connection, an endpoint that refuses, a missing bucket, bad keys
        endpoint = getattr(getattr(locals().get("s3"), "meta", None), "endpoint_url", "?")
        return [
            Finding(
                "store",
                ERROR,
                f"bucket {bucket!r} at {endpoint} (connection {settings.aws_conn_id!r}) did not answer: "
                f"{type(exc).__name__}: {str(exc)[:300]}",
                f"create the bucket, or set the connection {settings.aws_conn_id!r}: its login/password are the "
                'store\'s keys and its extra {"endpoint_url": "http://HOST:PORT"} the S3-compatible endpoint',
            )
        ]
    return [Finding("store", OK, f"bucket {bucket!r} at {s3.meta.endpoint_url} answers")]


def kubernetes_preflight(settings: Settings) -> Report:
    """Every check of the kubernetes profile (no estimate: the cluster's cost is not ours to know)."""
    return Report(findings=[*check_cluster(settings), *check_store(settings)])


def require_reachable(settings: Settings) -> None:
    """In the kubernetes profile, stop with every finding when the cluster or the store does not
    answer (the deployment DAG's first task: nothing is rolled out behind a missing connection)."""
    if settings.profile != "kubernetes":
        return
    from eksml.errors import PreflightError

    report = kubernetes_preflight(settings)
    if report.errors:
        raise PreflightError(
            "preflight found what the cluster or the store would reject:\n" + "\n".join(map(str, report.errors))
        )
