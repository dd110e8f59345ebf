"""Typed project configuration.

One place reads the environment, so the profile, stores and cluster are configuration and
never a code edit. Every field can be set with an ``EKSML_<FIELD>`` environment variable
(for example ``EKSML_PROFILE=aws``); in a task the Airflow Variable ``eksml_settings`` (a JSON
object) overrides the environment.

Two entry points: :func:`load_settings` (the environment only: offline tools, rendering) and
:func:`resolve_settings` (environment, then the Variable: whatever runs inside Airflow). Operators
reach both their settings and their connection ids through :class:`SettingsMixin`; a connection
id is spelled once, as the default of :attr:`Settings.aws_conn_id`.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlparse

from eksml.contract import parse_bool as parse_bool  # yes/no as the images read it too
from eksml.errors import InvalidInput
from eksml.layout import Area, area_uri

#: ``local``: workloads as local processes (the default). ``aws``: EKS clusters made and sized by
#: eksctl, SageMaker, ECR. ``kubernetes``: the cluster a user already has (kind, minikube, k3d,
#: on premises, an EKS cluster managed elsewhere), reached through the Airflow ``kubernetes``
#: connection ``kubernetes_conn_id``, with any S3-compatible store: the aws profile's Kubernetes
#: path (training pod, MPIJob, evaluation, registry, deployment) without eksctl, EKS, IAM or quotas.
Profile = Literal["local", "aws", "kubernetes"]
PROFILES: tuple[str, ...] = get_args(Profile)

#: Repository root: plugins/eksml/settings.py -> ../../..
PROJECT_ROOT = Path(__file__).resolve().parents[2]

#: What Kubernetes and registries accept, checked here so a bad value fails before anything renders.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # namespaces (RFC 1123 label)
_DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_REGISTRY = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
_IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_CLUSTER_NAME = re.compile(r"^[A-Za-z][-A-Za-z0-9]{0,99}$")  # EKS / eksctl
_CPU_QUANTITY = re.compile(r"^(?!0+(\.0*)?m?$)(\d+(\.\d+)?|\d+m)$")  # Kubernetes CPU: cores or millicores, > 0
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$")
DEFAULT_DATASET_DIR = "/usr/share/datasets/fashion-mnist"
DEFAULT_IMAGE_REGISTRY = "public.ecr.aws/eksml"
_IMAGE_DIGEST = re.compile(r"^(?P<name>[a-z0-9]+([._-][a-z0-9]+)*)@(?P<digest>sha256:[0-9a-f]{64})$")


class SettingsError(InvalidInput):
    """A configuration value is missing or invalid."""


def _default_store() -> str:
    return (PROJECT_ROOT / ".local" / "store").as_uri()


@dataclass(frozen=True)
class Settings:
    """Where things run and where they are stored."""

    profile: str = "local"
    #: Root of the data and model stores: ``file:///...`` (local) or ``s3://bucket/prefix``.
    store_uri: str = field(default_factory=_default_store)
    #: KMS key ARN of a store bucket encrypted with a customer-managed key (SSE-KMS): every
    #: identity's policy then allows the KMS calls S3 makes for it (preflight finds the key).
    store_kms_key_arn: str = ""
    #: Airflow connection for S3, EKS, STS and SageMaker (its extra may carry ``endpoint_url``);
    #: the one place its default is spelled.
    aws_conn_id: str = "aws_default"
    #: Airflow connection eksctl runs with (the lifecycle identity: ``python -m eksml.cluster.eksctl iam
    #: lifecycle``); empty: ``aws_conn_id``, which then needs both identities' policies.
    lifecycle_aws_conn_id: str = ""
    #: HTTP connection to Airflow's own REST API, through which a run's note is written.
    airflow_api_conn_id: str = "eksml_airflow_api"
    region: str = "us-west-2"
    #: Where the four Fashion-MNIST IDX files come from before they are versioned in the store.
    source_data_uri: str = DEFAULT_DATASET_DIR
    model_name: str = "fashion-mnist"
    #: Scheduled (timetable) runs of the training DAG train only when this is on; otherwise
    #: the run that unpausing creates is skipped in seconds. Manual, asset-triggered and
    #: backfill runs always train: someone asked for them.
    scheduled_training: bool = False

    # Kubernetes / EKS
    #: A Kubernetes connection to use instead of reaching each run's EKS cluster through the EKS
    #: API (empty: per cluster, token from ``aws_conn_id``; see ``eksml.cluster.target``).
    kubernetes_conn_id: str = ""
    cluster_name: str = "eksml"
    #: Training on its own cluster ``<cluster_name>-training``, serving on ``<cluster_name>``; every
    #: task then reaches the cluster of its role (``eksml.cluster.target``).
    dedicated_training_cluster: bool = False
    #: Default: the newest version in EKS standard support (``eksml.cluster.versions``).
    kubernetes_version: str = "1.35"
    namespace: str = "ml-training"
    inference_namespace: str = "ml-serving"
    training_service_account: str = "training"
    inference_service_account: str = "inference"
    #: Where the project's images are pulled from. The default names the project's public alias
    #: for rendering only: the aws profile needs the user's own private registry (preflight).
    image_registry: str = DEFAULT_IMAGE_REGISTRY
    image_tag: str = "0.1.0"
    #: Digests the images are pinned to, ``<image>@sha256:<hex>`` each (for example
    #: ``EKSML_IMAGE_DIGESTS=inference@sha256:...,tf-fashion-mnist@sha256:...``): a tag can be
    #: pushed again, a digest cannot. Required by the aws profile's preflight for every image a run uses.
    image_digests: tuple[str, ...] = ()
    #: A cluster outside EKS (kind, minikube, k3d, on premises) with an S3-compatible store: the
    #: store's endpoint as pods reach it, and a Secret in each workload namespace holding
    #: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` that pods load with ``envFrom`` (so the
    #: keys never enter a spec, XCom or a log). Both empty on EKS, where IRSA gives pods access.
    pod_store_endpoint_url: str = ""
    pod_store_secret: str = ""
    #: Pods go to their node group by the node label ``role`` (``eksml.cluster.node_contract``: train, inference,
    #: system), as eksctl's node groups carry it. Off: wherever the scheduler puts them, for a
    #: cluster whose nodes carry no such label (a one-node kind, minikube or k3d cluster).
    node_roles: bool = True

    # SageMaker
    #: The SageMaker execution role (its policy: ``python -m eksml.cluster.eksctl iam sagemaker``); no default.
    sagemaker_role_arn: str = ""
    sagemaker_subnets: tuple[str, ...] = ()
    sagemaker_security_groups: tuple[str, ...] = ()
    #: Run SageMaker jobs on a Deep Learning Container AWS no longer patches (the MXNet DLC);
    #: off: preflight refuses such a run.
    sagemaker_allow_unpatched_images: bool = False

    # Local profile
    venvs_dir: str = str(PROJECT_ROOT / ".venvs")
    images_dir: str = str(PROJECT_ROOT / "images")
    inference_port: int = 8080
    #: Address the local model server binds: loopback, or 0.0.0.0 in a container whose port is
    #: published (the Docker stack); checks always connect through 127.0.0.1.
    inference_host: str = "127.0.0.1"
    #: State and logs of the local model server; empty: ``serving/`` beside a ``file://``
    #: store (``.local/serving`` for the default store), else ``.local/serving``.
    serving_dir: str = ""

    #: Days a finished run's staging/ and checkpoints/ folders are kept (0: never deleted).
    retention_days: int = 7

    # Production integrations of the aws profile; each is off until asked for (an ALB, log
    # ingestion, an FSx file system cost money; an Ingress opens a port). docs/aws.md "Production
    # integrations" says when each fits.
    #: An ALB Ingress in front of the inference Service (AWS Load Balancer Controller).
    ingress: bool = False
    #: ``internal`` (reachable inside the VPC) or ``internet-facing``.
    ingress_scheme: str = "internal"
    #: The host name clients use; the certificate must cover it (empty: any host).
    ingress_host: str = ""
    #: HTTPS on :443 with HTTP redirected to it; needs ``ingress_certificate_arn``.
    ingress_tls: bool = True
    #: An ACM certificate ARN for the HTTPS listener.
    ingress_certificate_arn: str = ""
    #: Who may reach the ALB (empty: the controller's default, every address).
    ingress_inbound_cidrs: tuple[str, ...] = ()
    #: Sign-in through the ALB's authenticate action: ``none``, ``cognito`` or ``oidc``.
    ingress_auth: str = "none"
    ingress_cognito_user_pool_arn: str = ""
    ingress_cognito_client_id: str = ""
    #: The Cognito domain prefix (``my-domain``, not the full URL).
    ingress_cognito_domain: str = ""
    ingress_oidc_issuer: str = ""
    ingress_oidc_authorization_endpoint: str = ""
    ingress_oidc_token_endpoint: str = ""
    ingress_oidc_user_info_endpoint: str = ""
    #: A Secret in the serving namespace with ``clientID`` and ``clientSecret`` (made by the user).
    ingress_oidc_secret_name: str = ""
    #: Bounds of the inference HorizontalPodAutoscaler and its CPU target (% of requests).
    inference_min_replicas: int = 2
    inference_max_replicas: int = 6
    inference_target_cpu_percent: int = 70
    #: CPU request of each MPIJob worker (a Kubernetes quantity such as ``500m``); empty: the
    #: workload's own (4 per worker with GPUs, 2 without). For nodes smaller than that, where the
    #: workers and the launcher (1 CPU) must fit together (a one-node test cluster).
    mpi_worker_cpu: str = ""
    #: EKS control-plane logs (api, audit, authenticator) and pod logs to CloudWatch Logs.
    cloudwatch_logs: bool = False
    #: The Kubernetes API endpoint stays private (VPC); public access only when this is on, and
    #: then only from ``api_public_cidrs`` (required: never 0.0.0.0/0 unless written there).
    api_public_access: bool = False
    api_public_cidrs: tuple[str, ...] = ()
    #: Private subnets of an existing VPC (the one Airflow's workers run in) for the cluster and
    #: its nodes; empty: eksctl makes a VPC with private subnets behind a NAT gateway.
    private_subnets: tuple[str, ...] = ()
    #: Node scaling of GPU training nodes: ``cluster-autoscaler`` (node groups from 0, bursty
    #: work) or ``karpenter`` (a NodePool per job's needs, job-based work).
    node_scaler: str = "cluster-autoscaler"
    #: FSx for Lustre linked to the S3 data prefix, mounted read-only by training pods.
    fsx_lustre: bool = False
    fsx_storage_gib: int = 1200
    #: Where the file system lives: a private subnet of the nodes' VPC (default: the first of
    #: ``private_subnets``) and security groups that let the nodes reach Lustre (TCP 988).
    fsx_subnet: str = ""
    fsx_security_groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise SettingsError(f"unknown profile {self.profile!r}: expected one of {', '.join(PROFILES)}")
        if not self.store_uri.startswith(("file://", "s3://")):
            raise SettingsError(f"store_uri must start with file:// or s3://, got {self.store_uri!r}")
        if self.profile == "kubernetes":
            _check_kubernetes_profile(self)
        checks = (
            (("namespace", "inference_namespace"), _DNS_LABEL, "a Kubernetes namespace name (RFC 1123 label)"),
            (
                ("training_service_account", "inference_service_account"),
                _DNS_SUBDOMAIN,
                "a Kubernetes service account name (RFC 1123 subdomain)",
            ),
            (("image_registry",), _REGISTRY, "an image registry/repository prefix"),
            (("image_tag",), _IMAGE_TAG, "an image tag ([A-Za-z0-9_.-], at most 128)"),
            (("cluster_name",), _CLUSTER_NAME, "an EKS cluster name"),
        )
        for names, pattern, what in checks:
            for name in names:
                value = getattr(self, name)
                if not isinstance(value, str) or not pattern.match(value):
                    raise SettingsError(f"{name} must be {what}, got {value!r}")
        if self.store_kms_key_arn and not _KMS_KEY_ARN.match(self.store_kms_key_arn):
            raise SettingsError(
                f"store_kms_key_arn must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>), "
                f"got {self.store_kms_key_arn!r}"
            )
        for pin in self.image_digests:
            if not _IMAGE_DIGEST.match(pin):
                raise SettingsError(f"image_digests entries must read <image>@sha256:<64 hex>, got {pin!r}")
        if self.pod_store_secret and not _DNS_SUBDOMAIN.match(self.pod_store_secret):
            raise SettingsError(
                f"pod_store_secret must be a Kubernetes Secret name (RFC 1123 subdomain), got {self.pod_store_secret!r}"
            )
        if self.pod_store_endpoint_url and urlparse(self.pod_store_endpoint_url).scheme not in ("http", "https"):
            raise SettingsError(
                f"pod_store_endpoint_url must be an http(s):// URL, got {self.pod_store_endpoint_url!r}"
            )
        if self.mpi_worker_cpu and not _CPU_QUANTITY.match(self.mpi_worker_cpu):
            raise SettingsError(
                f"mpi_worker_cpu must be a positive CPU quantity (cores such as 2 or 0.5, or millicores such as "
                f"500m), got {self.mpi_worker_cpu!r}"
            )
        if self.retention_days < 0:
            raise SettingsError(f"retention_days must be 0 (keep forever) or more, got {self.retention_days!r}")
        if not 1 <= self.inference_port <= 65535:
            raise SettingsError(f"inference_port must be within 1..65535, got {self.inference_port!r}")
        _check_integrations(self)

    # --- derived locations -------------------------------------------------------------
    @property
    def data_root(self) -> str:
        return area_uri(self.store_uri, Area.DATA, self.model_name)

    @property
    def models_root(self) -> str:
        return area_uri(self.store_uri, Area.MODELS, self.model_name)

    @property
    def serving_state_dir(self) -> Path:
        """Where the local model server keeps its state: it follows a local store."""
        if self.serving_dir:
            return Path(self.serving_dir)
        if self.store_uri.startswith("file://"):
            return Path(urlparse(self.store_uri).path).parent / "serving"
        return PROJECT_ROOT / ".local" / "serving"

    @property
    def lifecycle_connection(self) -> str:
        """The connection eksctl and the janitor act through: the lifecycle identity's, else Airflow's."""
        return self.lifecycle_aws_conn_id or self.aws_conn_id

    def require_aws(self, what: str) -> None:
        """Refuse work that only exists on AWS in another profile (clear error, nothing spent)."""
        if self.profile != "aws":
            instead = {
                "local": "no EKS cluster exists: training runs as local processes instead",
                "kubernetes": f"the cluster is the one connection {self.kubernetes_conn_id!r} reaches, never made here",
            }[self.profile]
            raise SettingsError(
                f"{what} needs the aws profile (EKSML_PROFILE=aws or the eksml_settings Variable); the profile is "
                f"{self.profile!r}, where {instead}"
            )

    def image_digest(self, name: str) -> str | None:
        """The digest ``images/<name>`` is pinned to, if any."""
        for pin in self.image_digests:
            match = _IMAGE_DIGEST.match(pin)
            if match and match["name"] == name:
                return match["digest"]
        return None

    def tagged_image(self, name: str) -> str:
        """``images/<name>`` by tag alone: what ``docker build -t`` and ``docker push`` take."""
        return f"{self.image_registry}/{name}:{self.image_tag}"

    def image(self, name: str) -> str:
        """Fully qualified container image of ``images/<name>``: by digest when pinned (the tag
        stays for people reading it; the runtime pulls the digest)."""
        digest = self.image_digest(name)
        return self.tagged_image(name) + (f"@{digest}" if digest else "")

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _check_kubernetes_profile(s: Settings) -> None:
    """The kubernetes profile names its cluster and an S3-compatible store (nothing is guessed)."""
    if not s.kubernetes_conn_id:
        raise SettingsError(
            "the kubernetes profile needs kubernetes_conn_id: the Airflow connection (type kubernetes) of the "
            "cluster, e.g. EKSML_KUBERNETES_CONN_ID=kubernetes_default with AIRFLOW_CONN_KUBERNETES_DEFAULT="
            '\'{"conn_type": "kubernetes", "extra": {"kube_config_path": "~/.kube/config"}}\''
        )
    if not s.store_uri.startswith("s3://"):
        raise SettingsError(
            f"the kubernetes profile needs an s3:// store_uri (any S3-compatible store: its endpoint is the "
            f"extra endpoint_url of the Airflow connection {s.aws_conn_id!r}), got {s.store_uri!r}"
        )
    if s.pod_store_endpoint_url and not s.pod_store_secret:
        raise SettingsError(
            "pod_store_endpoint_url is set but pod_store_secret is empty: pods of a store outside AWS need its "
            "keys, from a Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in each workload namespace"
        )


INGRESS_SCHEMES = ("internal", "internet-facing")
INGRESS_AUTH = ("none", "cognito", "oidc")
NODE_SCALERS = ("cluster-autoscaler", "karpenter")
_COGNITO_POOL_ARN = re.compile(r"^arn:aws[-a-z]*:cognito-idp:[a-z0-9-]+:\d{12}:userpool/[\w-]+$")
_ACM_ARN = re.compile(r"^arn:aws[-a-z]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+$")


def _check_integrations(s: Settings) -> None:
    """The production integrations' settings agree with each other (clear error, nothing rendered)."""
    if s.ingress_scheme not in INGRESS_SCHEMES:
        raise SettingsError(f"ingress_scheme must be one of {INGRESS_SCHEMES}, got {s.ingress_scheme!r}")
    if s.ingress_auth not in INGRESS_AUTH:
        raise SettingsError(f"ingress_auth must be one of {INGRESS_AUTH}, got {s.ingress_auth!r}")
    if s.node_scaler not in NODE_SCALERS:
        raise SettingsError(f"node_scaler must be one of {NODE_SCALERS}, got {s.node_scaler!r}")
    if not 1 <= s.inference_min_replicas <= s.inference_max_replicas:
        raise SettingsError(
            "inference_min_replicas must be at least 1 and at most inference_max_replicas, got "
            f"{s.inference_min_replicas} and {s.inference_max_replicas}"
        )
    if not 1 <= s.inference_target_cpu_percent <= 100:
        raise SettingsError(f"inference_target_cpu_percent must be 1..100, got {s.inference_target_cpu_percent}")
    if s.api_public_access and not s.api_public_cidrs:
        raise SettingsError(
            "api_public_access is on but api_public_cidrs is empty: list the CIDRs allowed to reach the "
            "Kubernetes API (Airflow's workers' egress addresses); 0.0.0.0/0 is never implied"
        )
    if s.fsx_lustre and (s.fsx_storage_gib < 1200 or s.fsx_storage_gib % 1200):
        raise SettingsError(f"fsx_storage_gib must be 1200 or a multiple of 1200 (SCRATCH_2), got {s.fsx_storage_gib}")
    if s.fsx_lustre and not ((s.fsx_subnet or s.private_subnets) and s.fsx_security_groups):
        raise SettingsError(
            "fsx_lustre needs fsx_subnet (or private_subnets) and fsx_security_groups: the file system is made in "
            "that subnet, reachable from the nodes through those groups"
        )
    if not s.ingress:
        return
    if s.ingress_tls and not s.ingress_certificate_arn:
        raise SettingsError(
            "ingress_tls is on but ingress_certificate_arn is empty: give the ARN of an ACM certificate that "
            "covers ingress_host (or set ingress_tls=false for a plain-HTTP internal ALB)"
        )
    if s.ingress_certificate_arn and not _ACM_ARN.match(s.ingress_certificate_arn):
        raise SettingsError(f"ingress_certificate_arn is not an ACM certificate ARN: {s.ingress_certificate_arn!r}")
    if s.ingress_auth != "none" and not s.ingress_tls:
        raise SettingsError(f"ingress_auth={s.ingress_auth} needs ingress_tls: the ALB authenticates on HTTPS only")
    if s.ingress_auth == "cognito":
        if not _COGNITO_POOL_ARN.match(s.ingress_cognito_user_pool_arn):
            raise SettingsError(
                f"ingress_cognito_user_pool_arn is not a Cognito user pool ARN: {s.ingress_cognito_user_pool_arn!r}"
            )
        if not (s.ingress_cognito_client_id and s.ingress_cognito_domain):
            raise SettingsError("ingress_auth=cognito needs ingress_cognito_client_id and ingress_cognito_domain")
        if "://" in s.ingress_cognito_domain or "." in s.ingress_cognito_domain:
            raise SettingsError(
                f"ingress_cognito_domain is the domain prefix (my-domain), got {s.ingress_cognito_domain!r}"
            )
    if s.ingress_auth == "oidc":
        needed = ("issuer", "authorization_endpoint", "token_endpoint", "user_info_endpoint", "secret_name")
        missing = [f"ingress_oidc_{n}" for n in needed if not getattr(s, f"ingress_oidc_{n}")]
        if missing:
            raise SettingsError(f"ingress_auth=oidc needs {', '.join(missing)}")
    if s.ingress_scheme == "internet-facing" and s.ingress_auth == "none" and not s.ingress_inbound_cidrs:
        raise SettingsError(
            "an internet-facing ingress without sign-in would serve everyone: set ingress_auth (cognito or oidc) "
            "or ingress_inbound_cidrs"
        )


def coerce_value(name: str, raw: Any, like: Any) -> Any:
    """``raw`` (text from the environment, a Variable or a templated param) as the type of ``like``,
    the field's default: the settings and the cluster request read their values through here.
    SettingsError naming ``name`` when it is not one."""
    if isinstance(like, bool):
        try:
            return parse_bool(raw)
        except ValueError as exc:
            raise SettingsError(f"{name}: {exc}") from None
    if isinstance(like, int):
        try:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError(raw)
            return int(raw)
        except (TypeError, ValueError):
            raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if isinstance(like, tuple):
        if isinstance(raw, (list, tuple)):
            return tuple(raw)
        return tuple(part.strip() for part in str(raw).split(",") if part.strip())
    if isinstance(like, dict):
        try:
            return dict(raw)
        except (TypeError, ValueError):
            raise SettingsError(f"{name} must be a mapping, got {raw!r}") from None
    return str(raw)


def load_settings(overrides: dict[str, Any] | None = None) -> Settings:
    """Build :class:`Settings` from defaults, ``EKSML_*`` environment variables and overrides
    (offline tools; what runs in Airflow uses :func:`resolve_settings`)."""
    return _build(overrides, use_airflow_variable=False)


def resolve_settings(overrides: dict[str, Any] | None = None) -> Settings:
    """The settings a task runs with: defaults, ``EKSML_*`` variables, the ``eksml_settings``
    Variable, then ``overrides``. A Variable that cannot be read raises :class:`SettingsError`
    with the reason: a run never falls back to the local profile behind a failed read."""
    return _build(overrides, use_airflow_variable=True)


def _build(overrides: dict[str, Any] | None, *, use_airflow_variable: bool) -> Settings:
    base = Settings()
    values: dict[str, Any] = {}
    known = {f.name for f in fields(Settings)}
    for name in known:
        env = os.environ.get(f"EKSML_{name.upper()}")
        if env is not None:
            values[name] = env
    if use_airflow_variable:
        values.update(_airflow_variable_overrides())
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    unknown = set(values) - known
    if unknown:
        raise SettingsError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    coerced = {k: coerce_value(k, v, getattr(base, k)) for k, v in values.items()}
    return dataclasses.replace(base, **coerced)


def _airflow_variable_overrides() -> dict[str, Any]:
    """The JSON Variable ``eksml_settings``, or nothing when it is not set.

    Outside a task (a command-line tool, the API server) Airflow looks the Variable up in its
    environment and secrets backends and answers "not set" when none has it, so nothing here
    needs a metadata database; a lookup that fails for another reason is an error.
    """
    try:
        from airflow.sdk import Variable
    except ImportError:  # no Airflow in this environment (an image's tools): the environment only
        return {}
    try:
        raw = Variable.get("eksml_settings", default=None)
    except Exception as exc:
        raise SettingsError(
            f"reading the Airflow Variable eksml_settings failed ({type(exc).__name__}: {exc}); "
            "the settings cannot be known without it"
        ) from exc
    if not raw:
        return {}
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise SettingsError(f"Airflow Variable eksml_settings is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SettingsError("Airflow Variable eksml_settings must be a JSON object")
    return value


class FromSettings(enum.Enum):
    """Default of an operator's connection-id argument: the id the settings name.

    An enum member, so it survives the copies and pickles an operator goes through; ``None``
    keeps the providers' meaning (no Airflow connection: the worker's own credentials).
    """

    FROM_SETTINGS = "from settings"

    def __repr__(self) -> str:
        return "FROM_SETTINGS"


FROM_SETTINGS = FromSettings.FROM_SETTINGS


class SettingsMixin:
    """How every operator of the project finds its settings and its AWS connection.

    ``settings`` given to the operator win (tools, tests); otherwise they are resolved at run
    time (:func:`resolve_settings`, with the operator's ``settings_overrides`` if it has any),
    once per task try, never while the DAG file is parsed. ``aws_conn_id`` left at
    :data:`FROM_SETTINGS` is ``Settings.aws_conn_id``; an explicit id or ``None`` is kept.
    """

    settings: Settings | None = None
    settings_overrides: dict[str, Any] | None = None
    aws_conn_id: str | None | FromSettings = FROM_SETTINGS

    def resolved_settings(self) -> Settings:
        if self.settings is None:
            self.settings = resolve_settings(self.settings_overrides or None)
        return self.settings

    def resolved_aws_conn_id(self) -> str | None:
        if self.aws_conn_id is FROM_SETTINGS:
            return self.resolved_settings().aws_conn_id
        return self.aws_conn_id


class AwsProviderSettingsMixin(SettingsMixin):
    """:class:`SettingsMixin` for operators built on the amazon provider's ``AwsBaseOperator``.

    The provider gives ``aws_conn_id`` and ``region_name`` defaults of its own; here the ones
    not passed explicitly follow the settings once they are resolved (the provider's hook is
    rebuilt if one was made before).
    """

    _aws_given: tuple[bool, bool] = (False, False)

    def note_given_aws_arguments(self, kwargs: dict[str, Any]) -> None:
        """Call with the operator's keyword arguments before the provider's ``__init__``."""
        self._aws_given = ("aws_conn_id" in kwargs, "region_name" in kwargs)

    def resolved_settings(self) -> Settings:
        settings = super().resolved_settings()
        current = (self.aws_conn_id, getattr(self, "region_name", None))
        wanted = (
            current[0] if self._aws_given[0] else settings.aws_conn_id,
            current[1] if self._aws_given[1] else settings.region,
        )
        if wanted != current:
            self.aws_conn_id, self.region_name = wanted
            self.__dict__.pop("hook", None)  # a hook built before used the provider's defaults
        return settings
