"""What the training workloads become on Kubernetes, as data: no API calls here.

The GPU pod and both MPIJob replica templates are built from the same pieces, so GPU limits,
node placement, the GPU taint toleration, the non-root security context and the
credential-free environment are decided once. The pod itself is built by the pod operator
(:func:`eksml.kubernetes.operators.render_training_pod`), so what is rendered is what is submitted.

A distributed spec becomes a Kubeflow MPI operator ``MPIJob`` (``kubeflow.org/v2beta1``): one
launcher pod (CPU only) runs ``horovodrun`` over the hostfile the MPI operator writes;
``spec.replicas`` worker pods, each with ``slots_per_replica`` GPUs, run ``sshd`` until the
launcher starts one training process per slot on them. The launcher is created only once
every worker is Ready (``launcherCreationPolicy: WaitForWorkersReady``, and a worker is Ready
only when its sshd accepts connections), so it never crash-loops on ssh to a worker that is
still pulling its image.

Contract with the image (``images/mxnet-horovod``): user ``mpiuser`` (uid 1000) with home
``/home/mpiuser``; ``/home/mpiuser/.sshd_config`` naming a pid file and host key under that
home (the MPI operator mounts the job's key pair at ``sshAuthMountPath``); ssh client with
``StrictHostKeyChecking no`` and ``UserKnownHostsFile /dev/null``; ``horovodrun`` on the
PATH. sshd must not carry file capabilities (``setcap``): with every capability dropped
such a binary cannot be executed; port 22 is opened to non-root users by a safe sysctl.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from kubernetes.client import models as k8s

from eksml.cluster.fsx import FSX_CLAIM
from eksml.cluster.node_contract import (
    CPU_ROLES,
    GPU_RESOURCE,
    GPU_TAINT_EFFECT,
    GPU_TAINT_KEY,
    NODE_ROLE_LABEL,
    TRAIN_ROLE,
    node_selector,
    not_evictable,
)
from eksml.errors import InvalidInput
from eksml.settings import Settings
from eksml.specs import Resources, WorkloadSpec, WorkloadSpecError, coerce_spec

# --- the pieces every training pod shares ---------------------------------------------------------

#: The unprivileged user every image runs as.
RUN_AS_USER = 1000
RUN_AS_GROUP = 1000

#: A container that fails without writing /dev/termination-log leaves its last log lines (2048
#: bytes, 80 lines) as its termination message, which the task's error then quotes.
TERMINATION_MESSAGE_POLICY = "FallbackToLogsOnError"

#: Environment names that would put static credentials into a pod spec. Pods get AWS access
#: from their service account's IAM role (IRSA), never from variables in the spec.
_CREDENTIAL_NAME = re.compile(r"(SECRET|PASSWORD|PASSWD|ACCESS_KEY|SESSION_TOKEN|PRIVATE_KEY|API_KEY)", re.I)


class CredentialInSpecError(InvalidInput):
    """A workload's environment carries what looks like a credential."""


def needs_gpu_nodes(spec: WorkloadSpec) -> bool:
    """Whether ``spec`` must tolerate the GPU taint: it uses GPUs, or belongs on the training nodes."""
    return spec.resources.gpus > 0 or spec.node_role == TRAIN_ROLE


def cpu_node_affinity() -> k8s.V1Affinity:
    """Any CPU node of the cluster, whichever topology: for pods that need no GPU (the MPI launcher)."""
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


#: Where training containers see the FSx claim (``cluster.fsx.FSX_CLAIM``), read-only.
FSX_MOUNT = "/fsx/data"


def shared_data(settings: Settings) -> tuple[list[k8s.V1Volume], list[k8s.V1VolumeMount]]:
    """The FSx for Lustre data set, mounted read-only, when ``settings.fsx_lustre`` is on."""
    if not settings.fsx_lustre:
        return [], []
    volume = k8s.V1Volume(
        name="fsx-data",
        persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name=FSX_CLAIM, read_only=True),
    )
    return [volume], [k8s.V1VolumeMount(name="fsx-data", mount_path=FSX_MOUNT, read_only=True)]


def reading_shared_data(spec: WorkloadSpec, settings: Settings) -> WorkloadSpec:
    """``spec`` reading its data from the FSx for Lustre mount when ``settings.fsx_lustre`` is on.

    The file system's import path is the data prefix (``settings.data_root``, the StorageClass's
    ``s3ImportPath``), whose root FSx maps to the file system's root (FSx API reference,
    ``CreateFileSystemLustreConfiguration.ImportPath``), mounted at :data:`FSX_MOUNT`: so
    ``<data_root>/<drop>`` is ``FSX_MOUNT/<drop>``, and the trainers (which read a local folder
    as in the local profile) load it from the mount. A data set outside the prefix is not on the
    file system and stays on S3.
    """
    data_uri = spec.locations.get("data_uri")
    root = settings.data_root.rstrip("/")
    if not settings.fsx_lustre or not data_uri or not (data_uri == root or data_uri.startswith(root + "/")):
        return spec
    mounted = FSX_MOUNT + data_uri[len(root) :].rstrip("/")
    return dataclasses.replace(spec, locations=MappingProxyType({**spec.locations, "data_uri": mounted}))


def gpu_tolerations() -> list[k8s.V1Toleration]:
    """Tolerate the GPU nodes' ``nvidia.com/gpu=present:NoSchedule`` taint (any value)."""
    return [k8s.V1Toleration(key=GPU_TAINT_KEY, operator="Exists", effect=GPU_TAINT_EFFECT)]


def worker_resources(spec: WorkloadSpec, settings: Settings) -> Resources:
    """An MPI worker's resources: the spec's, with the CPU request ``settings.mpi_worker_cpu`` sets."""
    return replace(spec.resources, cpu=settings.mpi_worker_cpu) if settings.mpi_worker_cpu else spec.resources


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


# --- the MPIJob ---------------------------------------------------------------------------------

GROUP = "kubeflow.org"
VERSION = "v2beta1"
PLURAL = "mpijobs"
KIND = "MPIJob"
API_VERSION = f"{GROUP}/{VERSION}"

#: Labels the MPI operator puts on the pods it creates (used to find the launcher's pods).
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
JOB_ROLE_LABEL = "training.kubeflow.org/job-role"

MPI_USER_HOME = "/home/mpiuser"
SSH_AUTH_MOUNT_PATH = f"{MPI_USER_HOME}/.ssh"
SSHD_PORT = 22
#: Written by the MPI operator into the launcher: ``<worker>.<job>.<ns>.svc slots=<n>`` per worker.
HOSTFILE = "/etc/mpi/hostfile"
WORKER_COMMAND = ("/usr/sbin/sshd", "-De", "-f", f"{MPI_USER_HOME}/.sshd_config")
LAUNCHER_CONTAINER = "mpi-launcher"
WORKER_CONTAINER = "mpi-worker"
#: The launcher only starts processes over ssh and relays their output.
LAUNCHER_RESOURCES = Resources(cpu="1", memory="2Gi", gpus=0)

_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_HOSTNAME_MAX = 63


@dataclass(frozen=True)
class RunPolicy:
    """``spec.runPolicy``: retries, clean-up and deadlines of the job.

    Each epoch is checkpointed, so a retried launcher resumes training instead of restarting it.
    """

    #: Launcher pod retries before the job is Failed.
    backoff_limit: int = 2
    #: Finished jobs (and their launcher logs) are kept this long, then garbage-collected.
    ttl_seconds_after_finished: int = 3600
    #: Wall-clock limit of the launcher once it has started; ``None`` for none.
    active_deadline_seconds: int | None = 12 * 3600
    #: ``Running``: stop the workers still running when the launcher ends, keep finished pods.
    clean_pod_policy: str = "Running"

    def __post_init__(self) -> None:
        if self.clean_pod_policy not in {"Running", "All", "None"}:
            raise ValueError(f"clean_pod_policy must be Running, All or None, got {self.clean_pod_policy!r}")
        if self.backoff_limit < 0 or self.ttl_seconds_after_finished < 0:
            raise ValueError("backoff_limit and ttl_seconds_after_finished must be >= 0")
        if self.active_deadline_seconds is not None and self.active_deadline_seconds < 1:
            raise ValueError("active_deadline_seconds must be >= 1 or None")

    def to_dict(self) -> dict[str, Any]:
        policy: dict[str, Any] = {
            "cleanPodPolicy": self.clean_pod_policy,
            "backoffLimit": self.backoff_limit,
            "ttlSecondsAfterFinished": self.ttl_seconds_after_finished,
        }
        if self.active_deadline_seconds is not None:
            policy["activeDeadlineSeconds"] = self.active_deadline_seconds
        return policy


def launcher_command(spec: WorkloadSpec) -> list[str]:
    """``horovodrun`` over the operator's hostfile, then the same entrypoint and args as a pod."""
    return [
        "horovodrun",
        "-np",
        str(spec.total_processes),
        "--hostfile",
        HOSTFILE,
        *spec.container_command(),
        *spec.argv(),
    ]


def check_job_name(name: str, replicas: int = 1) -> str:
    """Return ``name`` if the MPIJob and every pod hostname derived from it will be valid."""
    if not isinstance(name, str) or not _DNS_1035.match(name):
        raise WorkloadSpecError(
            f"MPIJob name {name!r} must be a DNS-1035 label: lowercase letters, digits and '-', "
            "starting with a letter and ending with a letter or digit"
        )
    longest = max(f"{name}-launcher", f"{name}-worker-{max(replicas - 1, 0)}", key=len)
    if len(longest) > _HOSTNAME_MAX:
        raise WorkloadSpecError(
            f"MPIJob name {name!r} is too long: pod hostname {longest!r} exceeds {_HOSTNAME_MAX} characters"
        )
    return name


def job_name(base: str, key: str, max_length: int = 40) -> str:
    """A valid MPIJob name: ``base`` made DNS-1035, plus a digest of ``key`` (one per task try)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    stem = re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-")
    stem = re.sub(r"^[^a-z]+", "", stem)[: max_length - len(digest) - 1].rstrip("-") or "mpijob"
    return f"{stem}-{digest}"


def store_access(settings: Settings) -> tuple[list[k8s.V1EnvVar], list[k8s.V1EnvFromSource]]:
    """Environment that points a pod's store code at an S3-compatible endpoint, and the Secret
    its keys come from (``envFrom``), for a cluster outside EKS; nothing on EKS (IRSA)."""
    env = []
    if settings.pod_store_endpoint_url:
        env.append(k8s.V1EnvVar(name="AWS_ENDPOINT_URL_S3", value=settings.pod_store_endpoint_url))
    env_from = []
    if settings.pod_store_secret:
        env_from.append(k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=settings.pod_store_secret)))
    return env, env_from


def _container(
    name: str,
    image: str,
    command: list[str],
    env: list[k8s.V1EnvVar],
    resources: k8s.V1ResourceRequirements,
    settings: Settings,
    **extra: Any,
) -> k8s.V1Container:
    store_env, store_env_from = store_access(settings)
    return k8s.V1Container(
        name=name,
        image=image,
        command=command,
        env=env + store_env,
        env_from=store_env_from or None,
        resources=resources,
        security_context=container_security_context(),
        termination_message_policy=TERMINATION_MESSAGE_POLICY,
        **extra,
    )


def _template(
    spec: WorkloadSpec,
    settings: Settings,
    labels: Mapping[str, str],
    container: k8s.V1Container,
    sysctls: Mapping[str, str] | None = None,
    *,
    gpu_nodes: bool = True,
    volumes: list[k8s.V1Volume] | None = None,
) -> k8s.V1PodTemplateSpec:
    """Workers go to the GPU nodes (selector and toleration); the CPU-only launcher to any CPU node."""
    placement: dict[str, Any] = (
        {"node_selector": node_selector(spec.node_role), "tolerations": gpu_tolerations()}
        if gpu_nodes
        else {"affinity": cpu_node_affinity()}
    )
    if not settings.node_roles:  # nodes without role labels: anywhere (GPU tolerations stay harmless)
        placement.pop("node_selector", None)
        placement.pop("affinity", None)
    return k8s.V1PodTemplateSpec(
        metadata=k8s.V1ObjectMeta(labels=dict(labels), annotations=not_evictable()),
        spec=k8s.V1PodSpec(
            containers=[container],
            service_account_name=settings.training_service_account,
            automount_service_account_token=False,  # v2 launchers use ssh, not the Kubernetes API
            security_context=pod_security_context(sysctls),
            volumes=volumes or None,
            **placement,
        ),
    )


def render_mpijob(
    spec: WorkloadSpec | Mapping[str, Any],
    settings: Settings,
    name: str,
    *,
    run_policy: RunPolicy | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The MPIJob that runs distributed ``spec`` as ``name`` in the training namespace, as a dict."""
    from kubernetes.client import ApiClient

    spec = reading_shared_data(coerce_spec(spec), settings)
    if not spec.distributed:
        raise WorkloadSpecError(f"workload {spec.name!r} is not distributed: run it with GpuTrainingPodOperator")
    gpus = spec.resources.gpus
    if gpus and gpus != spec.slots_per_replica:
        raise WorkloadSpecError(
            f"workload {spec.name!r} asks for {gpus} GPU(s) per worker but {spec.slots_per_replica} "
            "slot(s): Horovod runs one process per GPU, so they must be equal"
        )
    check_job_name(name, spec.replicas)
    env = env_vars(spec.env)
    image = settings.image(spec.image)
    pod_labels = {**dict(spec.labels), **dict(labels or {})}

    launcher = _template(
        spec,
        settings,
        pod_labels,
        _container(
            LAUNCHER_CONTAINER,
            image,
            launcher_command(spec),
            env,
            resource_requirements(LAUNCHER_RESOURCES),
            settings,
        ),
        gpu_nodes=False,
    )
    shm_volumes, shm_mounts = shared_memory(spec.resources)
    data_volumes, data_mounts = shared_data(settings)
    shm_volumes, shm_mounts = shm_volumes + data_volumes, shm_mounts + data_mounts
    worker = _template(
        spec,
        settings,
        pod_labels,
        _container(
            WORKER_CONTAINER,
            image,
            list(WORKER_COMMAND),
            env,
            resource_requirements(worker_resources(spec, settings)),
            settings,
            ports=[k8s.V1ContainerPort(name="ssh", container_port=SSHD_PORT)],
            # Ready means sshd accepts connections: what WaitForWorkersReady waits for.
            readiness_probe=k8s.V1Probe(tcp_socket=k8s.V1TCPSocketAction(port=SSHD_PORT), period_seconds=2),
            volume_mounts=shm_mounts or None,
        ),
        sysctls={"net.ipv4.ip_unprivileged_port_start": str(SSHD_PORT)},
        volumes=shm_volumes,
    )

    sanitize = ApiClient().sanitize_for_serialization
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": settings.namespace, "labels": pod_labels},
        "spec": {
            "slotsPerWorker": spec.slots_per_replica,
            "runPolicy": (run_policy or RunPolicy()).to_dict(),
            "launcherCreationPolicy": "WaitForWorkersReady",
            "sshAuthMountPath": SSH_AUTH_MOUNT_PATH,
            "mpiImplementation": "OpenMPI",
            "mpiReplicaSpecs": {
                # Never: every launcher retry gets a fresh pod, so each attempt's log survives.
                "Launcher": {"replicas": 1, "restartPolicy": "Never", "template": sanitize(launcher)},
                # OnFailure: a worker whose sshd dies comes back in place, keeping its hostname.
                "Worker": {"replicas": spec.replicas, "restartPolicy": "OnFailure", "template": sanitize(worker)},
            },
        },
    }


#: Label that ties a training pod to its PodDisruptionBudget (an MPIJob's pods carry JOB_NAME_LABEL).
JOB_POD_LABEL = "eksml/job-pod"


def job_disruption_budget(owner: Mapping[str, Any], selector: Mapping[str, str], pods: int) -> dict[str, Any]:
    """A PodDisruptionBudget that refuses every voluntary eviction of a running job's pods (a
    drain, a scale-down by the cluster autoscaler or Karpenter), deleted with the job through
    its owner reference. Pods of a bare pod or an MPIJob (no scale subresource) admit only an
    integer ``minAvailable``: all of them."""
    meta = owner["metadata"]
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": {"app.kubernetes.io/part-of": "eksml"},
            "ownerReferences": [
                {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"], "uid": meta["uid"]}
            ],
        },
        "spec": {"minAvailable": pods, "selector": {"matchLabels": dict(selector)}},
    }
