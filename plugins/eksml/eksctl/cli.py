"""The eksctl command line: locating the binary, checking its version, building argv lists
and reading its JSON output.

Every command is an argv list handed to the OS directly, never a shell string, so no
cluster name or parameter can inject a command.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from eksml.eksctl.process import RunResult, run_captured
from eksml.eksctl.redact import Redactor

#: 0.202.0 is the first release that supports EKS 1.32 (eksctl-io/eksctl#8162) and has
#: access entries, AL2023 default AMIs and ``--install-nvidia-plugin``.
MIN_VERSION: tuple[int, int, int] = (0, 202, 0)
ENV_BINARY = "EKSML_EKSCTL"
_VERSION_RE = re.compile(r"(\d+)\.(\d+)\.(\d+)")
_NOT_FOUND_MARKERS = ("ResourceNotFoundException", "No cluster found")


class EksctlError(RuntimeError):
    """eksctl is unusable or a command failed."""


class EksctlNotFoundError(EksctlError):
    pass


class EksctlVersionError(EksctlError):
    pass


def find_eksctl(path: str | None = None) -> str:
    """Absolute path of the eksctl binary: ``path``, ``$EKSML_EKSCTL`` or ``PATH``."""
    candidate = path or os.environ.get(ENV_BINARY) or "eksctl"
    found = shutil.which(candidate)
    if not found:
        raise EksctlNotFoundError(
            f"eksctl binary not found ({candidate!r}); install eksctl >= {'.'.join(map(str, MIN_VERSION))} "
            f"(https://eksctl.io/installation/) on the Airflow workers and triggerer, "
            f"or set {ENV_BINARY} to its path"
        )
    return found


def parse_version(text: str) -> tuple[int, int, int]:
    """First ``X.Y.Z`` in ``eksctl version`` output (plain or JSON)."""
    match = _VERSION_RE.search(text or "")
    if not match:
        raise EksctlVersionError(f"cannot read an eksctl version from {text.strip()[:200]!r}")
    return int(match[1]), int(match[2]), int(match[3])


def require_version(text: str, minimum: tuple[int, int, int] = MIN_VERSION) -> tuple[int, int, int]:
    version = parse_version(text)
    if version < minimum:
        raise EksctlVersionError(
            f"eksctl {'.'.join(map(str, version))} is too old; the pipeline needs >= {'.'.join(map(str, minimum))}"
        )
    return version


# --- argv builders (without the binary; callers prepend it) ---------------------------
def version_args() -> list[str]:
    return ["version"]


def get_cluster_args(name: str, region: str) -> list[str]:
    return ["get", "cluster", "--name", name, "--region", region, "-o", "json"]


def get_nodegroups_args(cluster: str, region: str) -> list[str]:
    return ["get", "nodegroup", "--cluster", cluster, "--region", region, "-o", "json"]


def create_cluster_args(config_file: str) -> list[str]:
    # The pinned device plugin is installed by the add-ons task, so eksctl must not install
    # its own copy; the kubeconfig is built from the EKS API, not written to ~/.kube.
    return ["create", "cluster", "-f", config_file, "--install-nvidia-plugin=false", "--write-kubeconfig=false"]


def create_nodegroups_args(config_file: str) -> list[str]:
    """Creates the config's node groups that are missing; existing ones are skipped by eksctl."""
    return ["create", "nodegroup", "-f", config_file, "--install-nvidia-plugin=false"]


def associate_oidc_args(config_file: str) -> list[str]:
    return ["utils", "associate-iam-oidc-provider", "-f", config_file, "--approve"]


def create_service_accounts_args(config_file: str) -> list[str]:
    """Creates the IRSA roles that are missing; existing ones are skipped by eksctl."""
    return ["create", "iamserviceaccount", "-f", config_file, "--approve"]


def scale_nodegroup_args(
    cluster: str, region: str, nodegroup: str, desired: int, minimum: int, maximum: int
) -> list[str]:
    return [
        "scale",
        "nodegroup",
        "--cluster",
        cluster,
        "--region",
        region,
        "--name",
        nodegroup,
        "--nodes",
        str(desired),
        "--nodes-min",
        str(minimum),
        "--nodes-max",
        str(maximum),
    ]


def delete_cluster_args(name: str, region: str) -> list[str]:
    return ["delete", "cluster", "--name", name, "--region", region, "--wait"]


def write_kubeconfig_args(name: str, region: str, path: str) -> list[str]:
    return ["utils", "write-kubeconfig", "--cluster", name, "--region", region, "--kubeconfig", path]


# --- output parsing --------------------------------------------------------------------
@dataclass(frozen=True)
class ClusterState:
    """What ``eksctl get cluster -o json`` says about one cluster."""

    name: str
    status: str
    version: str | None
    tags: dict[str, str]


@dataclass(frozen=True)
class NodegroupState:
    name: str
    status: str
    min_size: int
    desired: int
    max_size: int
    instance_type: str | None


def _field(obj: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """eksctl prints SDK structs with Go field names; accept either capitalisation."""
    for key in (name, name[0].lower() + name[1:]):
        if key in obj:
            return obj[key]
    return default


def parse_get_cluster(result: RunResult, name: str) -> ClusterState | None:
    """None when the cluster does not exist; raise on any other failure."""
    if result.returncode != 0:
        text = "\n".join(result.tail)
        if any(marker in text for marker in _NOT_FOUND_MARKERS):
            return None
        raise EksctlError(f"eksctl get cluster {name} failed (exit {result.returncode}): {text[-1500:]}")
    try:
        items = json.loads(result.stdout or "[]")
    except json.JSONDecodeError as exc:
        raise EksctlError(f"eksctl get cluster printed no JSON: {result.stdout[:300]!r}") from exc
    for item in items if isinstance(items, list) else [items]:
        if _field(item, "Name") == name:
            return ClusterState(
                name=name,
                status=str(_field(item, "Status", "UNKNOWN")).upper(),
                version=_field(item, "Version"),
                tags=dict(_field(item, "Tags", {}) or {}),
            )
    return None


def parse_get_nodegroups(result: RunResult, cluster: str) -> dict[str, NodegroupState]:
    if result.returncode != 0:
        raise EksctlError(f"eksctl get nodegroup --cluster {cluster} failed: {' '.join(result.tail)[-1500:]}")
    items = json.loads(result.stdout or "[]") or []
    states = {}
    for item in items:
        name = _field(item, "Name")
        states[name] = NodegroupState(
            name=name,
            status=str(_field(item, "Status", "UNKNOWN")).upper(),
            min_size=int(_field(item, "MinSize", 0)),
            desired=int(_field(item, "DesiredCapacity", 0)),
            max_size=int(_field(item, "MaxSize", 0)),
            instance_type=_field(item, "InstanceType"),
        )
    return states


class Eksctl:
    """Synchronous eksctl client for the short commands a worker runs itself."""

    def __init__(self, binary: str, env: Mapping[str, str], redactor: Redactor, log: Callable[[str], None]):
        self.binary, self.env, self.redact, self.log = binary, dict(env), redactor, log

    def captured(self, args: list[str], timeout: float = 120) -> RunResult:
        self.log("$ eksctl " + " ".join(args))
        return run_captured([self.binary, *args], env=self.env, redact=self.redact, timeout=timeout)

    def check_version(self, minimum: tuple[int, int, int] = MIN_VERSION) -> tuple[int, int, int]:
        result = self.captured(version_args(), timeout=60)
        if result.returncode != 0:
            raise EksctlError(f"'eksctl version' failed (exit {result.returncode}): {' '.join(result.tail)}")
        return require_version(result.stdout, minimum)

    def get_cluster(self, name: str, region: str) -> ClusterState | None:
        return parse_get_cluster(self.captured(get_cluster_args(name, region)), name)

    def get_nodegroups(self, cluster: str, region: str) -> dict[str, NodegroupState]:
        return parse_get_nodegroups(self.captured(get_nodegroups_args(cluster, region)), cluster)
