"""The inference server as a :class:`~eksml.specs.WorkloadSpec`, and the aws profile's objects
built from it: Deployment, ClusterIP Service, PodDisruptionBudget, HorizontalPodAutoscaler,
optional ALB Ingress (HTTPS on an ACM certificate, sign-in by Cognito or OIDC).

The Deployment's container and the local profile's process take their entrypoint, arguments
and environment from :func:`serving_spec`, so both serve a version with the same settings.

Plain dicts (what the API server receives), built from the server's WorkloadSpec and the
pod parts the training pods share (node role, non-root security context, requests/limits).
The model version is a pod-template label and annotation, so each new version is a new
ReplicaSet revision: RollingUpdate with maxUnavailable 0 keeps old pods serving until new
ones are ready, and the previous revision is what a rollback returns to.
"""

from __future__ import annotations

import json
import re
from types import MappingProxyType
from typing import Any

from eksml.cluster.loadbalancer import INGRESS_CLASS
from eksml.cluster.node_contract import INFERENCE_ROLE, evictable_local_volumes
from eksml.settings import Settings
from eksml.specs import Resources, WorkloadSpec, arg_text, flag

IMAGE = "inference"
SCRIPT = "serve.py"
CONTAINER_PORT = 8080
#: The server's named input for its port (``serve.py --http-port``), by which a local server is recognised.
HTTP_PORT = "http_port"
DEFAULT_MAX_BATCH_SIZE = 64
#: No deliberate wait: requests that queue while the model runs form the next batch. On a
#: CPU with one model thread a wait only adds latency when idle (bench/inference_latency.py).
DEFAULT_MAX_LATENCY_MS = 0.0


def serving_spec(
    model_uri: str,
    version: str,
    model_name: str,
    *,
    host: str = "0.0.0.0",
    port: int = CONTAINER_PORT,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    max_latency_ms: float = DEFAULT_MAX_LATENCY_MS,
) -> WorkloadSpec:
    """The server of ``version`` (at ``model_uri``), listening on ``host:port``."""
    if not model_uri.startswith(("s3://", "file://", "/")):
        raise ValueError(f"model_uri must be s3://, file:// or an absolute path, got {model_uri!r}")
    if not version:
        raise ValueError("version must not be empty")
    named = {
        "model_uri": model_uri,
        "model_name": model_name,
        "model_version": version,
        "host": host,
        HTTP_PORT: port,
        "max_batch_size": max_batch_size,
        "max_latency_ms": float(max_latency_ms),
    }
    args = tuple(text for name, value in named.items() for text in (flag(name), arg_text(value)))
    return WorkloadSpec(
        name=f"serve-{model_name}",
        image=IMAGE,
        script=SCRIPT,
        args=args,
        env=MappingProxyType({"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}),
        resources=Resources(cpu="1", memory="2Gi", gpus=0),
        node_role=INFERENCE_ROLE,
        labels=MappingProxyType({"app.kubernetes.io/part-of": "eksml"}),
    )


SERVICE_PORT = 80
#: A server pod being replaced keeps serving this long after it is marked for deletion: the
#: endpoint controllers and every node's kube-proxy (and the ALB) stop sending it new
#: connections meanwhile, so none reaches a closed port. Measured on a real node: without it,
#: a rollout under steady traffic lost a request (tests/k8s/test_node_pipeline.py).
PRE_STOP_SLEEP_S = 10
#: Then SIGTERM: the server stops accepting and finishes what it has within its own graceful
#: shutdown timeout (30 s, ``eksml_inference.server``); the grace period covers both.
TERMINATION_GRACE_S = PRE_STOP_SLEEP_S + 30
VERSION_LABEL = "eksml/model-version"
MODEL_URI_ANNOTATION = "eksml/model-uri"
#: Writable scratch space (model download, TensorFlow's temp files) on a read-only root.
SCRATCH = "/tmp"
SCRATCH_VOLUME = "scratch"


def resource_name(settings: Settings) -> str:
    """Name of the Deployment, Service and Ingress: ``<model>-inference``."""
    return f"{settings.model_name}-inference"


def label_value(text: str) -> str:
    """``text`` as a valid label value (63 chars of [A-Za-z0-9_.-], alphanumeric at both ends)."""
    value = re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:63].strip("-_.")
    return value or "unknown"


def selector_labels(settings: Settings) -> dict[str, str]:
    """Labels that pick the pods; never the version (a Deployment's selector is immutable)."""
    return {"app.kubernetes.io/name": "inference", "app.kubernetes.io/instance": resource_name(settings)}


def _sanitize(obj: Any) -> Any:
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(obj)


def render_deployment(
    settings: Settings,
    model_uri: str,
    version: str,
    *,
    replicas: int = 2,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    max_latency_ms: float = DEFAULT_MAX_LATENCY_MS,
) -> dict[str, Any]:
    from eksml.cluster.node_contract import node_selector
    from eksml.kubernetes.manifests import (
        TERMINATION_MESSAGE_POLICY,
        container_security_context,
        env_vars,
        pod_security_context,
        store_access,
    )

    if not model_uri.startswith("s3://"):
        raise ValueError(f"pods read models from S3: model_uri must be s3://..., got {model_uri!r}")
    spec = serving_spec(
        model_uri, version, settings.model_name, max_batch_size=max_batch_size, max_latency_ms=max_latency_ms
    )
    env = {
        **spec.env,
        "AWS_REGION": settings.region,
        "AWS_DEFAULT_REGION": settings.region,
        "TMPDIR": SCRATCH,
        "HOME": SCRATCH,
        "MPLCONFIGDIR": SCRATCH,
    }
    store_env, store_env_from = store_access(settings)
    labels = {**selector_labels(settings), **spec.labels, VERSION_LABEL: label_value(version)}
    probe = {"periodSeconds": 10, "timeoutSeconds": 5}
    container = {
        "name": "server",
        "image": settings.image(spec.image),
        "imagePullPolicy": "IfNotPresent",
        "command": spec.container_command(),
        "args": spec.argv(),
        "env": _sanitize(env_vars(env) + store_env),
        **({"envFrom": _sanitize(store_env_from)} if store_env_from else {}),
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        # The model loads before the port opens: allow a slow first download, then probe often.
        "startupProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 60,
            "timeoutSeconds": 5,
        },
        "readinessProbe": {
            "httpGet": {"path": f"/v1/models/{settings.model_name}", "port": "http"},
            "failureThreshold": 3,
            **probe,
        },
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": "http"}, "failureThreshold": 3, **probe},
        # The kubelet's own sleep (no binary needed in the image; Kubernetes 1.30 and later).
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SLEEP_S}}},
        "resources": {
            "requests": {"cpu": spec.resources.cpu, "memory": spec.resources.memory},
            "limits": {"cpu": "2", "memory": "4Gi"},
        },
        "securityContext": {**_sanitize(container_security_context()), "readOnlyRootFilesystem": True},
        "volumeMounts": [{"name": SCRATCH_VOLUME, "mountPath": SCRATCH}],
        # A server that dies before it logs a reason still leaves its last lines in the pod status.
        "terminationMessagePolicy": TERMINATION_MESSAGE_POLICY,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": resource_name(settings),
            "namespace": settings.inference_namespace,
            "labels": labels,
            "annotations": {MODEL_URI_ANNOTATION: model_uri},
        },
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            "progressDeadlineSeconds": 600,
            "minReadySeconds": 5,
            "selector": {"matchLabels": selector_labels(settings)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": labels,
                    # the scratch emptyDir must not keep the node from scaling down
                    "annotations": {MODEL_URI_ANNOTATION: model_uri, **evictable_local_volumes(SCRATCH_VOLUME)},
                },
                "spec": {
                    "serviceAccountName": settings.inference_service_account,
                    "nodeSelector": node_selector(spec.node_role) if settings.node_roles else {},
                    "securityContext": _sanitize(pod_security_context()),
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
                    "containers": [container],
                    "topologySpreadConstraints": topology_spread(settings),
                    "volumes": [{"name": SCRATCH_VOLUME, "emptyDir": {"sizeLimit": "2Gi"}}],
                },
            },
        },
    }


def render_service(settings: Settings) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": resource_name(settings),
            "namespace": settings.inference_namespace,
            "labels": selector_labels(settings),
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(settings),
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


ALB = "alb.ingress.kubernetes.io/"
#: TLS 1.3 with 1.2 as the floor (an ELB security policy name).
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


def _auth_annotations(settings: Settings) -> dict[str, str]:
    """The ALB's authenticate action: Cognito or any OIDC provider (HTTPS listener only)."""
    if settings.ingress_auth == "cognito":
        idp = {
            "userPoolARN": settings.ingress_cognito_user_pool_arn,
            "userPoolClientID": settings.ingress_cognito_client_id,
            "userPoolDomain": settings.ingress_cognito_domain,
        }
    elif settings.ingress_auth == "oidc":
        idp = {
            "issuer": settings.ingress_oidc_issuer,
            "authorizationEndpoint": settings.ingress_oidc_authorization_endpoint,
            "tokenEndpoint": settings.ingress_oidc_token_endpoint,
            "userInfoEndpoint": settings.ingress_oidc_user_info_endpoint,
            "secretName": settings.ingress_oidc_secret_name,
        }
    else:
        return {}
    return {
        ALB + "auth-type": settings.ingress_auth,
        ALB + f"auth-idp-{settings.ingress_auth}": json.dumps(idp, separators=(",", ":")),
        ALB + "auth-on-unauthenticated-request": "authenticate",
        ALB + "auth-scope": "openid",
    }


def ingress_annotations(settings: Settings) -> dict[str, str]:
    """What the controller makes of the Ingress: scheme, listeners, certificate, sign-in, health check.

    Every key is documented for the pinned controller release (``ALB_CONTROLLER_VERSION``).
    """
    annotations = {
        ALB + "scheme": settings.ingress_scheme,
        ALB + "target-type": "ip",
        ALB + "healthcheck-path": "/v2/health/ready",
        ALB + "success-codes": "200",
    }
    if settings.ingress_tls:
        annotations.update(
            {
                ALB + "listen-ports": '[{"HTTP": 80}, {"HTTPS": 443}]',
                ALB + "ssl-redirect": "443",
                ALB + "certificate-arn": settings.ingress_certificate_arn,
                ALB + "ssl-policy": SSL_POLICY,
            }
        )
    else:
        annotations[ALB + "listen-ports"] = '[{"HTTP": 80}]'
    if settings.ingress_inbound_cidrs:
        annotations[ALB + "inbound-cidrs"] = ",".join(settings.ingress_inbound_cidrs)
    annotations.update(_auth_annotations(settings))
    return annotations


def render_ingress(settings: Settings) -> dict[str, Any]:
    """An Ingress for the AWS Load Balancer Controller (an ALB straight to the pod IPs)."""
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": "/",
                    "pathType": "Prefix",
                    "backend": {"service": {"name": resource_name(settings), "port": {"number": SERVICE_PORT}}},
                }
            ]
        }
    }
    if settings.ingress_host:
        rule = {"host": settings.ingress_host, **rule}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": resource_name(settings),
            "namespace": settings.inference_namespace,
            "labels": selector_labels(settings),
            "annotations": ingress_annotations(settings),
        },
        "spec": {"ingressClassName": INGRESS_CLASS, "rules": [rule]},
    }


def render_disruption_budget(settings: Settings) -> dict[str, Any]:
    """At most one server pod down at a time for a drain or a node scale-down."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": resource_name(settings),
            "namespace": settings.inference_namespace,
            "labels": selector_labels(settings),
        },
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(settings)}},
    }


def render_autoscaler(settings: Settings) -> dict[str, Any]:
    """CPU-driven replicas between the settings' bounds (the Deployment then leaves ``replicas`` to it)."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": resource_name(settings),
            "namespace": settings.inference_namespace,
            "labels": selector_labels(settings),
        },
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": resource_name(settings)},
            "minReplicas": settings.inference_min_replicas,
            "maxReplicas": settings.inference_max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": settings.inference_target_cpu_percent},
                    },
                }
            ],
        },
    }


def topology_spread(settings: Settings) -> list[dict[str, Any]]:
    """Server pods spread over zones (best effort) and nodes (at most one more on any node)."""
    selector = {"matchLabels": selector_labels(settings)}
    return [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": selector,
        },
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": selector,
        },
    ]


def render_inference_objects(
    settings: Settings,
    model_uri: str,
    version: str,
    *,
    ingress: bool | None = None,
    replicas: int | None = None,
) -> list[dict[str, Any]]:
    """Deployment, Service, PodDisruptionBudget, HorizontalPodAutoscaler (+ Ingress) serving
    ``version`` from ``model_uri``, in apply order.

    ``ingress`` defaults to the settings; ``replicas`` is the Deployment's count on a first
    apply, kept within the autoscaler's bounds.
    """
    if ingress is not None:
        settings = settings.replace(ingress=ingress)  # checked as the settings would be (TLS needs a certificate)
    wanted = settings.inference_min_replicas if replicas is None else replicas
    wanted = min(max(wanted, settings.inference_min_replicas), settings.inference_max_replicas)
    objects = [
        render_deployment(settings, model_uri, version, replicas=wanted),
        render_service(settings),
        render_disruption_budget(settings),
        render_autoscaler(settings),
    ]
    if settings.ingress:
        objects.append(render_ingress(settings))
    return objects
