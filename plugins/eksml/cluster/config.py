"""Typed model of eksctl's ``ClusterConfig`` (``eksctl.io/v1alpha5``) for this project.

Only the fields the project sets are modelled; :meth:`ClusterConfig.to_dict` renders the
document eksctl reads with ``create cluster -f``. :meth:`ClusterConfig.validate` checks
everything that can be checked offline, so bad input fails in a second instead of after
fifteen minutes of CloudFormation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from eksml.cluster.instance_types import InstanceTypeError, check_cpu_instance_type, check_gpu_instance_types
from eksml.cluster.node_contract import GPU_RESOURCE
from eksml.errors import InvalidInput

API_VERSION = "eksctl.io/v1alpha5"
CA_TAG_PREFIX = "k8s.io/cluster-autoscaler"
#: Node OS image family, pinned: eksctl's default follows its release (AL2 -> AL2023), and the
#: GPU driver, containerd and cgroup version come with it. AL2023 has NVIDIA AMIs for EKS.
AMI_FAMILY = "AmazonLinux2023"

#: EKS cluster name rule (CreateCluster API): letter or digit first, then [A-Za-z0-9_-], <= 100.
CLUSTER_NAME_RE = re.compile(r"^[0-9A-Za-z][A-Za-z0-9\-_]*$")
CLUSTER_NAME_MAX = 100
REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$")
K8S_VERSION_RE = re.compile(r"^1\.\d{2}$")
IAM_ROLE_NAME_RE = re.compile(r"^[\w+=,.@-]{1,64}$")
_LABEL_KEY_RE = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
#: EKS access policy equal to cluster-admin (``*`` on every resource and non-resource URL: EKS
#: user guide, "Review access policy permissions"); ``{partition}`` from the region.
CLUSTER_ADMIN_POLICY = "arn:{partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"


class ClusterConfigError(InvalidInput):
    """The requested cluster cannot be created; the message lists every problem found."""


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str = "NoSchedule"

    def to_dict(self) -> dict[str, str]:
        return {"key": self.key, "value": self.value, "effect": self.effect}


@dataclass(frozen=True)
class NodegroupState:
    """A node group as it is (EKS ``DescribeNodegroup`` or ``eksctl get nodegroup``), beside
    :class:`ManagedNodeGroup`, the group as it should be. eksctl's listing gives no labels,
    taints or capacity type: those stay empty when it is the source."""

    name: str
    status: str
    min_size: int
    desired: int
    max_size: int
    instance_types: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    taints: frozenset[tuple[str, str, str]] = frozenset()
    capacity_type: str = ""


@dataclass(frozen=True)
class ManagedNodeGroup:
    """An EKS managed node group; ``gpu=True`` marks the train group (NVIDIA types only)."""

    name: str
    instance_types: tuple[str, ...]
    min_size: int
    desired_capacity: int
    max_size: int
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    spot: bool = False
    volume_size: int = 80
    gpu: bool = False
    availability_zones: tuple[str, ...] = ()
    #: Nodes in private subnets only (no public IP); egress through the VPC's NAT gateway.
    private_networking: bool = True

    @property
    def gpus_per_node(self) -> int:
        return check_gpu_instance_types(list(self.instance_types)) if self.gpu else 0

    def problems(self) -> list[str]:
        errors: list[str] = []
        where = f"node group {self.name!r}"
        try:
            if self.gpu:
                check_gpu_instance_types(list(self.instance_types))
            else:
                if not self.instance_types:
                    errors.append(f"{where}: needs an instance type")
                for t in self.instance_types:
                    check_cpu_instance_type(t)
        except InstanceTypeError as exc:
            errors.append(f"{where}: {exc}")
        if len(self.instance_types) > 1 and not self.spot:
            errors.append(f"{where}: several instance types need spot=True (on-demand groups take one type)")
        for name, value in (("min", self.min_size), ("desired", self.desired_capacity), ("max", self.max_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                errors.append(f"{where}: {name} size must be a non-negative integer, got {value!r}")
        if not errors:
            if self.max_size < 1:
                errors.append(f"{where}: max size must be at least 1, got {self.max_size}")
            if self.desired_capacity > self.max_size:
                errors.append(f"{where}: desired ({self.desired_capacity}) > max ({self.max_size})")
            if self.min_size > self.desired_capacity:
                errors.append(f"{where}: min ({self.min_size}) > desired ({self.desired_capacity})")
        if not 20 <= self.volume_size <= 16384:
            errors.append(f"{where}: volume size must be 20-16384 GiB, got {self.volume_size}")
        for key, value in self.labels.items():
            if not _LABEL_KEY_RE.match(key) or not _LABEL_VALUE_RE.match(str(value)):
                errors.append(f"{where}: invalid label {key}={value}")
        for taint in self.taints:
            if taint.effect not in TAINT_EFFECTS:
                errors.append(f"{where}: taint effect {taint.effect!r} not in {TAINT_EFFECTS}")
        return errors

    def autoscaler_tags(self, cluster_name: str) -> dict[str, str]:
        """ASG tags that let cluster-autoscaler discover the group and scale it up from zero."""
        tags = {f"{CA_TAG_PREFIX}/enabled": "true", f"{CA_TAG_PREFIX}/{cluster_name}": "owned"}
        for key, value in self.labels.items():
            tags[f"{CA_TAG_PREFIX}/node-template/label/{key}"] = value
        for taint in self.taints:
            tags[f"{CA_TAG_PREFIX}/node-template/taint/{taint.key}"] = f"{taint.value}:{taint.effect}"
        if self.gpu:
            tags[f"{CA_TAG_PREFIX}/node-template/resources/{GPU_RESOURCE}"] = str(self.gpus_per_node)
        return tags

    def to_dict(self, cluster_name: str) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name}
        if self.spot or len(self.instance_types) > 1:
            doc["instanceTypes"] = list(self.instance_types)
            doc["spot"] = self.spot
        else:
            doc["instanceType"] = self.instance_types[0]
        doc.update(
            amiFamily=AMI_FAMILY,
            minSize=self.min_size,
            desiredCapacity=self.desired_capacity,
            maxSize=self.max_size,
            volumeSize=self.volume_size,
            volumeType="gp3",
            labels=dict(self.labels),
        )
        if self.taints:
            doc["taints"] = [t.to_dict() for t in self.taints]
        if self.availability_zones:
            doc["availabilityZones"] = list(self.availability_zones)
        doc["privateNetworking"] = self.private_networking
        # IMDSv2 only, and a hop limit of 1 so a pod cannot reach the node role's credentials
        # (eksctl pkg/cfn/builder/nodegroup.go makeMetadataOptions: disablePodIMDS sets
        # HttpTokens=required and HttpPutResponseHopLimit=1); pods use IRSA instead.
        doc["disableIMDSv1"] = True
        doc["disablePodIMDS"] = True
        # propagateASGTags copies labels/taints to the ASG as node-template tags; the explicit
        # tags below add what it cannot know (GPU count) and the auto-discovery tags.
        doc["propagateASGTags"] = True
        doc["tags"] = self.autoscaler_tags(cluster_name)
        return doc


@dataclass(frozen=True)
class IAMServiceAccount:
    """An IRSA role for one Kubernetes service account.

    ``roleOnly`` is set: eksctl owns the IAM role and its OIDC trust, the pipeline owns
    the ServiceAccount object (rendered by :mod:`eksml.cluster.objects`).
    """

    name: str
    namespace: str
    role_name: str
    policy: dict[str, Any] | None = None
    well_known_policies: dict[str, bool] | None = None

    def problems(self) -> list[str]:
        errors = []
        if not IAM_ROLE_NAME_RE.match(self.role_name):
            errors.append(f"IAM role name {self.role_name!r} must be 1-64 characters of [A-Za-z0-9+=,.@_-]")
        if not self.policy and not self.well_known_policies:
            errors.append(f"service account {self.namespace}/{self.name} has no policy")
        return errors

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "metadata": {"name": self.name, "namespace": self.namespace},
            "roleName": self.role_name,
            "roleOnly": True,
        }
        if self.policy:
            doc["attachPolicy"] = self.policy
        if self.well_known_policies:
            doc["wellKnownPolicies"] = dict(self.well_known_policies)
        return doc


@dataclass(frozen=True)
class AccessEntry:
    """Maps the pipeline's IAM principal to Kubernetes groups bound by the project's RBAC, plus
    EKS access policies (cluster scope) associated with the entry when it is created. A ``type``
    other than STANDARD (``EC2_LINUX``: a role of nodes EKS maps itself) takes neither."""

    principal_arn: str
    kubernetes_groups: tuple[str, ...] = ()
    access_policies: tuple[str, ...] = ()
    type: str = ""

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"principalARN": self.principal_arn}
        if self.type:
            doc["type"] = self.type
        if self.kubernetes_groups:
            doc["kubernetesGroups"] = list(self.kubernetes_groups)
        if self.access_policies:
            doc["accessPolicies"] = [
                {"policyARN": arn, "accessScope": {"type": "cluster"}} for arn in self.access_policies
            ]
        return doc


#: EKS control-plane log types (eksctl ``cloudWatch.clusterLogging.enableTypes``).
LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
SUBNET_ID_RE = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_CIDR_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$")


@dataclass(frozen=True)
class ApiEndpoint:
    """Who reaches the Kubernetes API: always the VPC (private access); from outside only when
    ``public`` is on, and then only from ``public_cidrs`` (eksctl ``vpc.clusterEndpoints`` and
    ``vpc.publicAccessCIDRs``)."""

    public: bool = False
    public_cidrs: tuple[str, ...] = ()

    def problems(self) -> list[str]:
        errors = [
            f"public API access CIDR {c!r} is not an IPv4 CIDR" for c in self.public_cidrs if not _CIDR_RE.match(c)
        ]
        if self.public and not self.public_cidrs:
            errors.append("public API access needs the CIDRs allowed to reach it (0.0.0.0/0 is never implied)")
        if self.public_cidrs and not self.public:
            errors.append("public API access CIDRs are given but public access is off")
        return errors

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"clusterEndpoints": {"privateAccess": True, "publicAccess": self.public}}
        if self.public:
            doc["publicAccessCIDRs"] = list(self.public_cidrs)
        return doc


@dataclass(frozen=True)
class EksAddon:
    """An EKS add-on at a pinned version, its IAM through IRSA (eksctl ``addons``)."""

    name: str
    version: str
    attach_policy_arns: tuple[str, ...] = ()
    configuration_values: str = ""
    attach_policy: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.attach_policy_arns:
            doc["attachPolicyARNs"] = list(self.attach_policy_arns)
        if self.attach_policy:
            doc["attachPolicy"] = self.attach_policy
        if self.configuration_values:
            doc["configurationValues"] = self.configuration_values
        return doc


@dataclass(frozen=True)
class ClusterConfig:
    """One EKS cluster as eksctl creates it."""

    name: str
    region: str
    version: str
    node_groups: tuple[ManagedNodeGroup, ...]
    service_accounts: tuple[IAMServiceAccount, ...] = ()
    access_entries: tuple[AccessEntry, ...] = ()
    #: eksctl's own access entry making the creator cluster admin; off when the creator is the
    #: pipeline principal, whose one entry is declared instead (``eksctl.request.access_entries``).
    bootstrap_creator_admin: bool = True
    tags: dict[str, str] = field(default_factory=dict)
    availability_zones: tuple[str, ...] = ()
    endpoint: ApiEndpoint = field(default_factory=lambda: ApiEndpoint())
    #: Control-plane log types sent to CloudWatch Logs (empty: none, the default: logs cost money).
    logging_types: tuple[str, ...] = ()
    addons: tuple[EksAddon, ...] = ()
    #: Private subnet ids of an existing VPC (empty: eksctl makes the VPC).
    private_subnets: tuple[str, ...] = ()

    def problems(self) -> list[str]:
        errors: list[str] = []
        if not isinstance(self.name, str) or not CLUSTER_NAME_RE.match(self.name):
            errors.append(
                f"invalid cluster name {self.name!r}: must start with a letter or digit and contain only "
                "letters, digits, '-' and '_'"
            )
        elif len(self.name) > CLUSTER_NAME_MAX:
            errors.append(f"cluster name {self.name!r} is {len(self.name)} characters; EKS allows {CLUSTER_NAME_MAX}")
        if not REGION_RE.match(self.region or ""):
            errors.append(f"invalid AWS region {self.region!r} (expected a name like us-west-2)")
        if not K8S_VERSION_RE.match(self.version or ""):
            errors.append(f"invalid Kubernetes version {self.version!r} (expected MAJOR.MINOR such as 1.33)")
        for zone in self.availability_zones:
            if not zone.startswith(self.region):
                errors.append(f"availability zone {zone!r} is not in region {self.region!r}")
        if not self.node_groups:
            errors.append("a cluster needs at least one node group")
        names = [ng.name for ng in self.node_groups]
        if len(set(names)) != len(names):
            errors.append(f"duplicate node group names: {names}")
        for ng in self.node_groups:
            errors.extend(ng.problems())
        # coredns, the autoscaler and the MPI operator must run somewhere untainted.
        if self.node_groups and not any(not ng.taints and ng.min_size >= 1 for ng in self.node_groups):
            errors.append("at least one untainted node group needs min size >= 1 for system pods")
        for sa in self.service_accounts:
            errors.extend(sa.problems())
        errors.extend(self.endpoint.problems())
        unknown_logs = set(self.logging_types) - set(LOG_TYPES)
        if unknown_logs:
            errors.append(f"unknown control-plane log types {sorted(unknown_logs)}: expected some of {LOG_TYPES}")
        for subnet in self.private_subnets:
            if not SUBNET_ID_RE.match(subnet):
                errors.append(f"{subnet!r} is not a subnet id (subnet-...)")
        return errors

    def validate(self) -> ClusterConfig:
        errors = self.problems()
        if errors:
            raise ClusterConfigError(f"cluster {self.name!r}: " + "; ".join(errors))
        return self

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": "ClusterConfig",
            "metadata": {"name": self.name, "region": self.region, "version": self.version},
        }
        if self.tags:
            doc["metadata"]["tags"] = dict(self.tags)
        if self.availability_zones:
            doc["availabilityZones"] = list(self.availability_zones)
        doc["iam"] = {"withOIDC": True}
        if self.service_accounts:
            doc["iam"]["serviceAccounts"] = [sa.to_dict() for sa in self.service_accounts]
        if self.access_entries or not self.bootstrap_creator_admin:
            doc["accessConfig"] = {
                "authenticationMode": "API_AND_CONFIG_MAP",
                "bootstrapClusterCreatorAdminPermissions": self.bootstrap_creator_admin,
                "accessEntries": [e.to_dict() for e in self.access_entries],
            }
        doc["vpc"] = self.endpoint.to_dict()
        if self.private_subnets:
            doc["vpc"]["subnets"] = {"private": {subnet: {"id": subnet} for subnet in self.private_subnets}}
        if self.logging_types:
            doc["cloudWatch"] = {"clusterLogging": {"enableTypes": list(self.logging_types)}}
        if self.addons:
            doc["addons"] = [addon.to_dict() for addon in self.addons]
        doc["managedNodeGroups"] = [ng.to_dict(self.name) for ng in self.node_groups]
        return doc


def render_yaml(config: ClusterConfig) -> str:
    """One ClusterConfig as a YAML document (key order kept for readability): the exact bytes
    eksctl reads with ``-f``."""
    import yaml

    return yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=False)


def render_stream(configs: Iterable[ClusterConfig]) -> str:
    """Several ClusterConfigs as a multi-document YAML stream (one per cluster)."""
    return "---\n".join(render_yaml(c) for c in configs)
