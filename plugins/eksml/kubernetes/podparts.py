"""The pieces every training pod shares, as Kubernetes client models.

The GPU pod and both MPIJob replica templates are built from these, so GPU limits, node
placement, the GPU taint toleration, the non-root security context and the credential-free
environment are decided once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from kubernetes.client import models as k8s

from eksml.nodes import CPU_ROLES, GPU_RESOURCE, GPU_TAINT_EFFECT, GPU_TAINT_KEY, NODE_ROLE_LABEL, TRAIN_ROLE
from eksml.specs import Resources, WorkloadSpec

#: The unprivileged user every image runs as.
RUN_AS_USER = 1000
RUN_AS_GROUP = 1000

#: Environment names that would put static credentials into a pod spec. Pods get AWS access
#: from their service account's IAM role (IRSA), never from variables in the spec.
_CREDENTIAL_NAME = re.compile(r"(SECRET|PASSWORD|PASSWD|ACCESS_KEY|SESSION_TOKEN|PRIVATE_KEY|API_KEY)", re.I)


class CredentialInSpecError(ValueError):
    """A workload's environment carries what looks like a credential."""


def needs_gpu_nodes(spec: WorkloadSpec) -> bool:
    """Whether ``spec`` must tolerate the GPU taint: it uses GPUs, or belongs on the training nodes."""
    return spec.resources.gpus > 0 or spec.node_role == TRAIN_ROLE


def cpu_node_affinity() -> k8s.V1Affinity:
    """Any CPU node of the cluster, whichever layout: for pods that need no GPU (the MPI launcher)."""
    term = k8s.V1NodeSelectorTerm(
        match_expressions=[k8s.V1NodeSelectorRequirement(key=NODE_ROLE_LABEL, operator="In", values=list(CPU_ROLES))]
    )
    return k8s.V1Affinity(
        node_affinity=k8s.V1NodeAffinity(
            required_during_scheduling_ignored_during_execution=k8s.V1NodeSelector(node_selector_terms=[term])
        )
    )


def shared_memory(resources: Resources) -> tuple[list[k8s.V1Volume], list[k8s.V1VolumeMount]]:
    """A memory-backed ``/dev/shm`` for processes that share GPUs' data through it (NCCL, Horovod).

    The container runtime's default is 64 MiB, too small for several GPUs in one pod; the
    volume counts against the pod's memory limit, which bounds it.
    """
    if resources.gpus <= 1:
        return [], []
    volume = k8s.V1Volume(
        name="dshm", empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory", size_limit=str(resources.memory))
    )
    return [volume], [k8s.V1VolumeMount(name="dshm", mount_path="/dev/shm")]


def gpu_tolerations() -> list[k8s.V1Toleration]:
    """Tolerate the GPU nodes' ``nvidia.com/gpu=present:NoSchedule`` taint (any value)."""
    return [k8s.V1Toleration(key=GPU_TAINT_KEY, operator="Exists", effect=GPU_TAINT_EFFECT)]


def resource_requirements(resources: Resources, gpus: int | None = None) -> k8s.V1ResourceRequirements:
    """Requests for CPU and memory, a memory limit equal to the request, and whole GPUs as limits.

    Memory is limited so an over-eager process is stopped in its own pod rather than evicting
    its neighbours; CPU is not, as throttling only slows training down.
    """
    gpus = resources.gpus if gpus is None else gpus
    limits: dict[str, str] = {"memory": str(resources.memory)}
    if gpus:
        limits[GPU_RESOURCE] = str(gpus)
    return k8s.V1ResourceRequirements(
        requests={"cpu": str(resources.cpu), "memory": str(resources.memory)}, limits=limits
    )


def pod_security_context(sysctls: Mapping[str, str] | None = None) -> k8s.V1PodSecurityContext:
    """Non-root user and group for every container, RuntimeDefault seccomp, optional safe sysctls."""
    return k8s.V1PodSecurityContext(
        run_as_non_root=True,
        run_as_user=RUN_AS_USER,
        run_as_group=RUN_AS_GROUP,
        # Volumes (the projected IRSA web-identity token included) become readable by that group.
        fs_group=RUN_AS_GROUP,
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        sysctls=[k8s.V1Sysctl(name=k, value=v) for k, v in (sysctls or {}).items()] or None,
    )


def container_security_context() -> k8s.V1SecurityContext:
    """No privilege escalation and no Linux capabilities at all."""
    return k8s.V1SecurityContext(
        allow_privilege_escalation=False,
        privileged=False,
        run_as_non_root=True,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


def check_no_credentials(env: Mapping[str, str]) -> None:
    """Refuse an environment that names a secret; the message says how access is granted instead."""
    suspicious = sorted(name for name in env if _CREDENTIAL_NAME.search(name))
    if suspicious:
        raise CredentialInSpecError(
            f"environment variable(s) {', '.join(suspicious)} look like credentials; pods must not carry "
            "credentials in their spec: grant access through the training service account's IAM role (IRSA)"
        )


def env_vars(env: Mapping[str, str]) -> list[k8s.V1EnvVar]:
    """The spec's environment as container variables, after :func:`check_no_credentials`."""
    check_no_credentials(env)
    return [k8s.V1EnvVar(name=name, value=str(value)) for name, value in env.items()]
