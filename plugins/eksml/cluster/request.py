"""What a user asks for (settings + DAG params) turned into one or two ClusterConfigs.

:class:`ClusterRequest` holds the knobs a person sets in the trigger form or on the
command line; :func:`build_cluster_configs` applies the project's conventions (node group
names, labels, taints, IRSA roles) and validates the result.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eksml.cluster.config import (
    CLUSTER_ADMIN_POLICY,
    AccessEntry,
    ClusterConfig,
    ClusterConfigError,
    EksAddon,
    IAMServiceAccount,
    ManagedNodeGroup,
    Taint,
)
from eksml.cluster.iam import StoreUriError, inference_policy, irsa_role_name, partition_for, training_policy
from eksml.cluster.instance_types import gpu_accelerator
from eksml.cluster.node_contract import (
    ACCELERATOR_LABEL,
    GPU_TAINT_EFFECT,
    GPU_TAINT_KEY,
    GPU_TAINT_VALUE,
    INFERENCE_ROLE,
    NODE_ROLE_LABEL,
    SYSTEM_ROLE,
    TRAIN_ROLE,
    TRAINING_CLUSTER,
)
from eksml.settings import Settings, SettingsError, coerce_value, load_settings, parse_bool

TRAIN_GROUP = "ng-train"
INFERENCE_GROUP = "ng-inference"
SYSTEM_GROUP = "ng-system"
GPU_TAINT = Taint(key=GPU_TAINT_KEY, value=GPU_TAINT_VALUE, effect=GPU_TAINT_EFFECT)
log = logging.getLogger(__name__)

#: Control-plane logs sent to CloudWatch when ``cloudwatch_logs`` is on: who called the API
#: (audit), how they authenticated (authenticator) and the API server's own log.
CONTROL_PLANE_LOGS = ("api", "audit", "authenticator")
#: Pod logs (Fluent Bit) and Container Insights to CloudWatch, as an EKS add-on at a pinned version.
CLOUDWATCH_ADDON = "amazon-cloudwatch-observability"
CLOUDWATCH_ADDON_VERSION = "v5.2.3-eksbuild.1"
#: The FSx for Lustre CSI driver as an EKS add-on, at the release vendored in include/kubernetes.
FSX_ADDON = "aws-fsx-csi-driver"
FSX_ADDON_VERSION = "v1.9.0-eksbuild.1"
#: ``node_scaler`` value for which GPU nodes come from Karpenter instead of the ng-train group.
KARPENTER_SCALER = "karpenter"
#: Tag by which Karpenter finds the cluster's subnets and security groups (eksctl puts the
#: cluster's metadata tags on what it creates).
KARPENTER_DISCOVERY_TAG = "karpenter.sh/discovery"
PIPELINE_GROUP = "eksml-pipeline"
DEFAULT_GPU_INSTANCE_TYPE = "g5.xlarge"
#: Node-group sizes a request gets unless asked otherwise (the eks_cluster DAG's form shows them).
DEFAULT_TRAIN_NODES = 0
DEFAULT_TRAIN_MAX_NODES = 4
DEFAULT_INFERENCE_NODES = 1
AUTOSCALER_SERVICE_ACCOUNT = ("kube-system", "cluster-autoscaler")
TRAINING_CLUSTER_SUFFIX = "-training"
PROJECT_TAG = "eksml/project"
#: The request's field whose setting has another name; every other field a setting shares by name.
FROM_SETTING = {"name": "cluster_name"}
#: What a text override of a field without a default (None) is read as.
_OPTIONAL_LIKE = {"int | None": 0, "str | None": ""}


@dataclass(frozen=True)
class ClusterRequest:
    """Cluster knobs. A field named like a setting (``name``: ``cluster_name``) has no default of
    its own: :meth:`from_settings` takes it from :class:`~eksml.settings.Settings` by name."""

    name: str
    region: str
    kubernetes_version: str
    store_uri: str
    model_name: str
    #: KMS key of an SSE-KMS store bucket; the IRSA policies grant it through S3.
    store_kms_key_arn: str
    namespace: str
    inference_namespace: str
    training_service_account: str
    inference_service_account: str
    dedicated_training_cluster: bool
    #: Production integrations.
    ingress: bool
    cloudwatch_logs: bool
    api_public_access: bool
    api_public_cidrs: tuple[str, ...]
    private_subnets: tuple[str, ...]
    node_scaler: str
    fsx_lustre: bool
    #: One GPU per node (a training pod asks for one); the group starts empty and the autoscaler
    #: adds nodes for pending training pods, so a created cluster bills no GPU while idle.
    train_instance_types: tuple[str, ...] = (DEFAULT_GPU_INSTANCE_TYPE,)
    spot: bool = False
    train_nodes: int = DEFAULT_TRAIN_NODES
    train_min_nodes: int = 0
    #: None means max(DEFAULT_TRAIN_MAX_NODES, train_nodes): see :attr:`train_max_size`.
    train_max_nodes: int | None = None
    train_volume_size: int = 200
    inference_instance_type: str = "m5.2xlarge"
    inference_nodes: int = DEFAULT_INFERENCE_NODES
    inference_min_nodes: int = 1
    inference_max_nodes: int | None = None
    inference_volume_size: int = 80
    system_instance_type: str = "m5.large"
    availability_zones: tuple[str, ...] = ()
    #: IAM principal the pipeline's Kubernetes calls are mapped from (bound to PIPELINE_GROUP's
    #: Roles); default: the creator, i.e. the identity of the Airflow AWS connection.
    pipeline_principal_arn: str | None = None
    #: IAM principal that runs eksctl (resolved from STS by the operator before a create).
    creator_arn: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def train_max_size(self) -> int:
        """The GPU group's (or NodePool's) upper bound: as asked, else room above the desired size."""
        if self.train_max_nodes is not None:
            return self.train_max_nodes
        return max(DEFAULT_TRAIN_MAX_NODES, self.train_nodes)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides: Any) -> ClusterRequest:
        """Request built from settings, then ``overrides`` (None values are ignored)."""
        s = settings or load_settings()
        settings_fields = {f.name for f in dataclasses.fields(s)}
        taken = {f.name: FROM_SETTING.get(f.name, f.name) for f in dataclasses.fields(cls)}
        base = cls(**{name: getattr(s, setting) for name, setting in taken.items() if setting in settings_fields})
        return base.with_overrides(overrides)

    def with_overrides(self, overrides: Mapping[str, Any]) -> ClusterRequest:
        """Copy with ``overrides`` coerced to the field types (templated params arrive as text)."""
        known = {f.name: f for f in dataclasses.fields(self)}
        unknown = set(overrides) - set(known)
        if unknown:
            raise ClusterConfigError(f"unknown cluster parameter(s): {', '.join(sorted(unknown))}")
        changes = {k: _coerce(known[k], v, getattr(self, k)) for k, v in overrides.items() if v is not None and v != ""}
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for trigger kwargs and XCom)."""
        data = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def _coerce(field: dataclasses.Field, value: Any, current: Any) -> Any:
    """A templated (text) override as the field's type, read as the settings read theirs."""
    like = _OPTIONAL_LIKE.get(str(field.type), current) if current is None else current
    try:
        return coerce_value(field.name, value, like)
    except SettingsError as exc:
        raise ClusterConfigError(f"parameter {field.name}={value!r} has the wrong type") from exc


def train_node_group(req: ClusterRequest) -> ManagedNodeGroup:
    """The GPU node group ``ng-train`` as requested (not yet validated)."""
    model = gpu_accelerator(req.train_instance_types)
    accelerator = {ACCELERATOR_LABEL: model} if model else {}
    return ManagedNodeGroup(
        name=TRAIN_GROUP,
        instance_types=req.train_instance_types,
        min_size=req.train_min_nodes,
        desired_capacity=req.train_nodes,
        max_size=req.train_max_size,
        labels={NODE_ROLE_LABEL: TRAIN_ROLE, **accelerator},
        taints=(GPU_TAINT,),
        spot=req.spot,
        volume_size=req.train_volume_size,
        gpu=True,
        availability_zones=req.availability_zones,
    )


def _cpu_group(
    name: str,
    role: str,
    instance_type: str,
    nodes: int,
    min_nodes: int,
    max_nodes: int | None,
    volume: int,
    zones: tuple[str, ...],
) -> ManagedNodeGroup:
    return ManagedNodeGroup(
        name=name,
        instance_types=(instance_type,),
        min_size=min_nodes,
        desired_capacity=nodes,
        max_size=max_nodes if max_nodes is not None else max(3, nodes),
        labels={NODE_ROLE_LABEL: role},
        volume_size=volume,
        availability_zones=zones,
    )


def inference_node_group(req: ClusterRequest) -> ManagedNodeGroup:
    """The CPU node group ``ng-inference`` as requested (not yet validated)."""
    return _cpu_group(
        INFERENCE_GROUP,
        INFERENCE_ROLE,
        req.inference_instance_type,
        req.inference_nodes,
        req.inference_min_nodes,
        req.inference_max_nodes,
        req.inference_volume_size,
        req.availability_zones,
    )


def autoscaler_role_name(cluster: str, region: str) -> str:
    return irsa_role_name(cluster, region, "cluster-autoscaler")


def training_role_name(cluster: str, req: ClusterRequest) -> str:
    return irsa_role_name(cluster, req.region, req.training_service_account)


def inference_role_name(cluster: str, req: ClusterRequest) -> str:
    return irsa_role_name(cluster, req.region, req.inference_service_account)


def _service_accounts(
    cluster: str, req: ClusterRequest, *, training: bool, inference: bool
) -> tuple[IAMServiceAccount, ...]:
    accounts = [
        IAMServiceAccount(
            name=AUTOSCALER_SERVICE_ACCOUNT[1],
            namespace=AUTOSCALER_SERVICE_ACCOUNT[0],
            role_name=autoscaler_role_name(cluster, req.region),
            well_known_policies={"autoScaler": True},
        )
    ]
    if training:
        accounts.append(
            IAMServiceAccount(
                name=req.training_service_account,
                namespace=req.namespace,
                role_name=training_role_name(cluster, req),
                policy=training_policy(req.store_uri, req.model_name, req.region, kms_key_arn=req.store_kms_key_arn),
            )
        )
    if inference:
        accounts.append(
            IAMServiceAccount(
                name=req.inference_service_account,
                namespace=req.inference_namespace,
                role_name=inference_role_name(cluster, req),
                policy=inference_policy(req.store_uri, req.model_name, req.region, kms_key_arn=req.store_kms_key_arn),
            )
        )
    accounts.extend(integration_service_accounts(cluster, req, training=training, inference=inference))
    return tuple(accounts)


def pipeline_is_creator(req: ClusterRequest) -> bool:
    """Whether the principal that runs eksctl is also the one the pipeline's tasks act as."""
    principal = req.pipeline_principal_arn or req.creator_arn
    return bool(principal) and principal == req.creator_arn


def access_entries(req: ClusterRequest) -> tuple[tuple[AccessEntry, ...], bool]:
    """The cluster's access entries, and whether eksctl adds its own cluster-admin entry for the creator.

    After the node group stacks, ``eksctl create cluster`` lists and watches the nodes of every
    group with min size >= 1 as the creator (eksctl v0.215.0 ``pkg/ctl/create/cluster.go`` ->
    ``eks.WaitForNodes`` in ``pkg/eks/client.go``), before ``prepare_cluster`` has made any
    RoleBinding; a refusal there fails the create. So the creator needs that access from the
    first minute. A creator that is not the pipeline principal keeps eksctl's own admin entry.
    When it is the pipeline principal, a second entry for the same principal is refused by EKS
    ("access entry already in use"), so its one entry carries both the pipeline's group and the
    cluster-admin access policy: a creation grant that the add-ons step removes once the
    project's RBAC is in place (:func:`eksml.cluster.eks.cluster_admin_while`).
    """
    principal = req.pipeline_principal_arn or req.creator_arn
    if not principal:
        return (), True
    if not pipeline_is_creator(req):
        return (AccessEntry(principal_arn=principal, kubernetes_groups=(PIPELINE_GROUP,)),), True
    grant = CLUSTER_ADMIN_POLICY.format(partition=partition_for(req.region))
    return (AccessEntry(principal_arn=principal, kubernetes_groups=(PIPELINE_GROUP,), access_policies=(grant,)),), False


def training_cluster_name(req: ClusterRequest) -> str:
    """Name of the cluster that runs training (``<name>-training`` when dedicated)."""
    return req.name + TRAINING_CLUSTER_SUFFIX if req.dedicated_training_cluster else req.name


def trains_on_dedicated_cluster(chosen: bool | str | None) -> bool:
    """Whether training has its own cluster: as chosen for a run, else as the settings say."""
    if chosen is None or chosen == "":
        from eksml.settings import resolve_settings

        return resolve_settings().dedicated_training_cluster
    try:
        return parse_bool(chosen)
    except ValueError as exc:
        raise ClusterConfigError(f"parameter dedicated_training_cluster={chosen!r} has the wrong type") from exc


def cluster_name_for_role(req: ClusterRequest, cluster_role: str) -> str:
    """Cluster name in the topology ``cluster_role`` implies: "training" is the dedicated one."""
    return req.name + TRAINING_CLUSTER_SUFFIX if cluster_role == TRAINING_CLUSTER else req.name


def scaled_node_groups(req: ClusterRequest, groups: tuple[ManagedNodeGroup, ...]) -> tuple[ManagedNodeGroup, ...]:
    """The node groups eksctl makes for ``groups``: without the GPU group when Karpenter scales GPU nodes."""
    return tuple(ng for ng in groups if not (ng.gpu and req.node_scaler == KARPENTER_SCALER))


def build_cluster_configs(req: ClusterRequest) -> list[ClusterConfig]:
    """One shared cluster, or a dedicated training cluster plus the inference cluster.

    Raises :class:`ClusterConfigError` listing every problem; nothing is sent anywhere. A
    Kubernetes version out of EKS support is refused, one in (billed) extended support logged.
    """
    from eksml.cluster.versions import KubernetesVersionError, check_kubernetes_version

    try:
        for warning in check_kubernetes_version(req.kubernetes_version):
            log.warning("%s", warning)
    except KubernetesVersionError as exc:
        raise ClusterConfigError(str(exc)) from None
    try:
        access, bootstrap = access_entries(req)
        tags = {PROJECT_TAG: "eksml", **req.tags}
        zones = req.availability_zones
        inference_group = inference_node_group(req)
        if not req.dedicated_training_cluster:
            configs = [
                ClusterConfig(
                    name=req.name,
                    region=req.region,
                    version=req.kubernetes_version,
                    node_groups=(train_node_group(req), inference_group),
                    service_accounts=_service_accounts(req.name, req, training=True, inference=True),
                    access_entries=access,
                    bootstrap_creator_admin=bootstrap,
                    tags=tags,
                    availability_zones=zones,
                )
            ]
        else:
            train_name = training_cluster_name(req)
            system_group = _cpu_group(SYSTEM_GROUP, SYSTEM_ROLE, req.system_instance_type, 1, 1, 2, 50, zones)
            configs = [
                ClusterConfig(
                    name=train_name,
                    region=req.region,
                    version=req.kubernetes_version,
                    node_groups=(train_node_group(req), system_group),
                    service_accounts=_service_accounts(train_name, req, training=True, inference=False),
                    access_entries=access,
                    bootstrap_creator_admin=bootstrap,
                    tags=tags,
                    availability_zones=zones,
                ),
                ClusterConfig(
                    name=req.name,
                    region=req.region,
                    version=req.kubernetes_version,
                    node_groups=(inference_group,),
                    # training too: evaluation runs here, as the training service account
                    service_accounts=_service_accounts(req.name, req, training=True, inference=True),
                    access_entries=access,
                    bootstrap_creator_admin=bootstrap,
                    tags=tags,
                    availability_zones=zones,
                ),
            ]
    except StoreUriError as exc:
        raise ClusterConfigError(str(exc)) from exc
    configs = [with_integrations(cfg, req) for cfg in configs]
    problems = [p for cfg in configs for p in (f"cluster {cfg.name!r}: {e}" for e in cfg.problems())]
    if req.node_scaler == KARPENTER_SCALER:
        from eksml.cluster.karpenter_aws import name_problems

        cluster = training_cluster_name(req)
        problems += [f"cluster {cluster!r}: {e}" for e in name_problems(cluster)]
    if problems:
        raise ClusterConfigError("; ".join(problems))
    return configs


def integration_service_accounts(
    cluster: str, req: ClusterRequest, *, training: bool, inference: bool
) -> list[IAMServiceAccount]:
    """IRSA roles of the add-ons the settings turn on: the AWS Load Balancer Controller (its
    published policy) on the serving cluster, the FSx CSI driver on the training cluster."""
    from eksml.cluster.loadbalancer import NAME as ALB_NAME
    from eksml.cluster.loadbalancer import NAMESPACE as ALB_NAMESPACE
    from eksml.cluster.loadbalancer import controller_policy, controller_role_name

    accounts = []
    if inference and req.ingress:
        accounts.append(
            IAMServiceAccount(
                name=ALB_NAME,
                namespace=ALB_NAMESPACE,
                role_name=controller_role_name(cluster, req.region),
                policy=controller_policy(),
            )
        )
    return accounts


def runs_karpenter(req: ClusterRequest, cluster: str) -> bool:
    """Whether Karpenter scales ``cluster``'s GPU nodes: in Karpenter mode, on the cluster that trains."""
    return req.node_scaler == KARPENTER_SCALER and cluster == training_cluster_name(req)


def request_account(req: ClusterRequest) -> str | None:
    """The AWS account of the request's principals (the creator's, resolved from STS before a create)."""
    from eksml.cluster.iam import account_from_arn

    for arn in (req.creator_arn, req.pipeline_principal_arn):
        account = account_from_arn(arn or "")
        if account:
            return account
    return None


def _karpenter_access(
    config: ClusterConfig, req: ClusterRequest
) -> tuple[tuple[IAMServiceAccount, ...], tuple[AccessEntry, ...]]:
    """The controller's IRSA role, and the nodes' role's access entry (its ARN needs the account:
    without one, offline, the entry is left out and the policy names any account)."""
    from eksml.cluster.karpenter_aws import controller_service_account, node_access_entry

    account = request_account(req)
    accounts = (*config.service_accounts, controller_service_account(config.name, req.region, account or "*"))
    entries = config.access_entries
    if account:
        entries = (*entries, node_access_entry(config.name, req.region, account))
    return accounts, entries


def with_integrations(config: ClusterConfig, req: ClusterRequest) -> ClusterConfig:
    """``config`` with the API endpoint, logging and EKS add-ons the request's settings ask for."""
    from eksml.cluster.config import ApiEndpoint
    from eksml.cluster.iam import partition_for

    addons = []
    logs: tuple[str, ...] = ()
    if req.cloudwatch_logs:
        logs = CONTROL_PLANE_LOGS
        policy = f"arn:{partition_for(req.region)}:iam::aws:policy/CloudWatchAgentServerPolicy"
        addons.append(EksAddon(CLOUDWATCH_ADDON, CLOUDWATCH_ADDON_VERSION, attach_policy_arns=(policy,)))
    if req.fsx_lustre and config.name == training_cluster_name(req):
        from eksml.cluster.fsx import driver_policy

        addons.append(EksAddon(FSX_ADDON, FSX_ADDON_VERSION, attach_policy=driver_policy()))
    groups, tags = config.node_groups, config.tags
    accounts, entries = config.service_accounts, config.access_entries
    if req.node_scaler == KARPENTER_SCALER:
        # GPU nodes come from Karpenter's NodePool (eksml.cluster.karpenter), which finds the
        # cluster's subnets and security groups by this tag.
        groups = scaled_node_groups(req, groups)
        tags = {**tags, KARPENTER_DISCOVERY_TAG: config.name}
        if runs_karpenter(req, config.name):
            accounts, entries = _karpenter_access(config, req)
    return dataclasses.replace(
        config,
        node_groups=groups,
        tags=tags,
        service_accounts=accounts,
        access_entries=entries,
        endpoint=ApiEndpoint(public=req.api_public_access, public_cidrs=req.api_public_cidrs),
        logging_types=logs,
        addons=tuple(addons),
        private_subnets=req.private_subnets,
    )
