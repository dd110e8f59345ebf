"""The MPIJob hooks: every call the project makes to the Kubernetes API about an MPIJob.

Hand-written because the cncf-kubernetes provider knows pods and batch Jobs only. Both hooks
subclass the provider's (``KubernetesHook``, ``AsyncKubernetesHook``), so connections,
kubeconfigs, in-cluster configuration and token refresh stay the provider's, and so does its
retry policy for transient API errors. As in the provider, the sync hook serves the operator
(create, launcher logs, delete, and the wait of a run that does not defer) and the async hook
serves the trigger (the deferred wait, delete when the task is killed). Both waits run the same
state machine (:class:`_Wait`), so a deferred run and one that waits in the worker end alike.

The phase of a job comes from the ``status.conditions`` the MPI operator maintains: one
condition per type (``Created``, ``Running``, ``Restarting``, ``Suspended``, ``Succeeded``,
``Failed``) whose ``status`` flips between ``"True"`` and ``"False"``; a job that finished still
lists ``Running`` (then ``"False"``), a resumed one still lists ``Suspended``. Only conditions
that are ``"True"`` count.

All ranks' output reaches the launcher (``horovodrun`` relays it), so its log is the training
log. Every launcher attempt (``runPolicy.backoffLimit`` retries) is its own pod; each is copied,
oldest first, and the tail of the newest is what a failure message quotes.

:class:`DeploymentHook` serves the inference rollout: the provider's resource operators only
create or delete objects and it has no rollout wait or rollback for Deployments, so objects are
applied server-side through :class:`ApplyHook` (``kubectl apply --server-side``; the cluster
add-ons and the project's own cluster objects go through it too), the rollout is read the way ``kubectl
rollout status`` reads it, a Service is called through the API server's proxy (no Ingress or
port forward needed), and a rollback restores the previous ReplicaSet's pod template (``kubectl
rollout undo``).
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook, KubernetesHook
from airflow.providers.cncf.kubernetes.kubernetes_helper_functions import generic_api_retry
from kubernetes.client.exceptions import ApiException
from kubernetes_asyncio import client as async_client

from eksml.cluster.apply import ApplyHook
from eksml.kubernetes.manifests import (
    API_VERSION,
    GROUP,
    JOB_NAME_LABEL,
    JOB_ROLE_LABEL,
    KIND,
    LAUNCHER_CONTAINER,
    PLURAL,
    VERSION,
    job_disruption_budget,
)

# --- the phase of a job ---------------------------------------------------------------------------

#: A job the controller has not reconciled yet has no conditions at all.
PENDING = "Pending"
CREATED = "Created"
RUNNING = "Running"
RESTARTING = "Restarting"
SUSPENDED = "Suspended"
SUCCEEDED = "Succeeded"
FAILED = "Failed"

TERMINAL = frozenset({SUCCEEDED, FAILED})
#: Strongest first. Succeeded outranks Failed: the operator can mark a job Failed for an evicted
#: worker after its launcher already exited 0, and the launcher's exit code is the training result.
_PRECEDENCE = (SUCCEEDED, FAILED, SUSPENDED, RESTARTING, RUNNING, CREATED)


@dataclass(frozen=True)
class JobPhase:
    """Where a job stands, with the reason and message of the condition that decided it."""

    phase: str
    reason: str = ""
    message: str = ""

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL

    def describe(self) -> str:
        detail = ": ".join(part for part in (self.reason, self.message) if part)
        return f"{self.phase} ({detail})" if detail else self.phase


def job_phase(job: Mapping[str, Any]) -> JobPhase:
    """The phase of the MPIJob object ``job`` (as the API returns it)."""
    conditions = (job.get("status") or {}).get("conditions") or []
    active = {c.get("type"): c for c in conditions if str(c.get("status")) == "True"}
    for phase in _PRECEDENCE:
        if phase in active:
            condition = active[phase]
            return JobPhase(phase, condition.get("reason") or "", condition.get("message") or "")
    return JobPhase(PENDING)


def _status(remote_pod: Any, container: str) -> Any:
    statuses = (getattr(getattr(remote_pod, "status", None), "container_statuses", None)) or []
    return next((s for s in statuses if s.name == container), None)


def _terminated(remote_pod: Any, container: str) -> Any:
    status = _status(remote_pod, container)
    return (status and status.state and status.state.terminated) or None


def never_started(remote_pod: Any, container: str) -> str | None:
    """Why ``container`` is still waiting to start (an image that cannot be pulled, a bad
    config), naming its image; None once it started. The provider's error for a pod that
    never started says only that it "returned a failure"."""
    status = _status(remote_pod, container)
    waiting = status and status.state and status.state.waiting
    if not waiting:
        return None
    detail = ": ".join(part for part in (waiting.reason, waiting.message) if part) or "waiting"
    return f"container {container} never started (image {status.image}): {detail}"


def container_exit_code(remote_pod: Any, container: str) -> int | None:
    """Exit status of ``container`` in a finished pod, or None while unknown."""
    terminated = _terminated(remote_pod, container)
    return terminated.exit_code if terminated else None


def out_of_memory(remote_pod: Any, container: str) -> str | None:
    """Why ``container`` ended when the kernel killed it over its memory limit (the kubelet's
    reason ``OOMKilled``), naming the limit and what to raise; None otherwise. The provider's
    error quotes only the container's last log lines, which an OOM kill cuts off mid-way."""
    terminated = _terminated(remote_pod, container)
    if terminated is None or terminated.reason != "OOMKilled":
        return None
    containers = getattr(getattr(remote_pod, "spec", None), "containers", None) or []
    spec = next((c for c in containers if c.name == container), None)
    limit = ((spec.resources.limits or {}) if spec is not None and spec.resources else {}).get("memory")
    return (
        f"container {container} was OOMKilled (exit code {terminated.exit_code}): it went over its memory "
        f"limit of {limit or 'unknown'}; raise the workload's memory (its spec's resources) or train on "
        "smaller batches"
    )


# --- waiting for the end of a job -----------------------------------------------------------------


class _Wait:
    """One wait on a job: when it ends, and the event it ends with.

    The event: ``{"status": "success" | "failed" | "timeout" | "error", "name", "namespace",
    "phase", "reason", "message"}``. ``startup_deadline`` (epoch seconds) bounds the time the job
    may stay Pending/Created (workers not scheduled or not Ready, launcher not running);
    ``execution_deadline`` ends the wait whatever the phase (the task's ``execution_timeout``),
    so the operator can delete the job instead of orphaning it.
    """

    def __init__(
        self, name: str, namespace: str, startup_deadline: float | None, execution_deadline: float | None, log: Any
    ) -> None:
        self.name, self.namespace = name, namespace
        self.startup_deadline, self.execution_deadline = startup_deadline, execution_deadline
        self.log = log
        self.ref = f"MPIJob {namespace}/{name}"
        self.last_seen: str | None = None

    def event(self, status: str, phase: str, reason: str = "", message: str = "") -> dict[str, str]:
        return {
            "status": status,
            "name": self.name,
            "namespace": self.namespace,
            "phase": phase,
            "reason": reason,
            "message": message,
        }

    def read_failed(self, exc: BaseException, api_exception: type[Exception]) -> dict[str, str]:
        """The job could not be read (retries exhausted): an error event, which the operator cleans up after."""
        phase = self.last_seen or PENDING
        if isinstance(exc, api_exception):
            status = getattr(exc, "status", None)
            if status == 404:
                return self.event("error", phase, "NotFound", f"{self.ref} no longer exists (deleted?)")
            return self.event(
                "error", phase, f"ApiError{status}", f"{self.ref} cannot be read: {status} {getattr(exc, 'reason', '')}"
            )
        return self.event("error", phase, type(exc).__name__, f"{self.ref} cannot be read: {exc}")

    def observe(self, phase: JobPhase, now: float) -> dict[str, str] | None:
        """The event that ends the wait on a job now in ``phase``, or None to keep waiting."""
        if phase.phase != self.last_seen:
            self.log.info("%s is %s", self.ref, phase.describe())
            self.last_seen = phase.phase
        if phase.terminal:
            status = "success" if phase.phase == SUCCEEDED else "failed"
            return self.event(status, phase.phase, phase.reason, phase.message)
        if self.execution_deadline is not None and now >= self.execution_deadline:
            return self.event(
                "timeout",
                phase.phase,
                "ExecutionTimeout",
                f"{self.ref} still {phase.describe()} when the task's execution_timeout expired",
            )
        if phase.phase in (PENDING, CREATED) and self.startup_deadline is not None and now >= self.startup_deadline:
            return self.event(
                "timeout",
                phase.phase,
                "StartupTimeout",
                f"{self.ref} did not start running in time (workers not scheduled or not Ready): {phase.describe()}",
            )
        return None


# --- the hooks --------------------------------------------------------------------------------------


class LauncherLog(NamedTuple):
    """The newest launcher pod's last lines and its container's exit status (None while unknown)."""

    tail: list[str]
    exit_code: int | None


def create_disruption_budget(api_client: Any, budget: Mapping[str, Any]) -> bool:
    """Create a job's PodDisruptionBudget; False when it exists already (an earlier attempt of the same try)."""
    from kubernetes.client import PolicyV1Api

    try:
        PolicyV1Api(api_client).create_namespaced_pod_disruption_budget(budget["metadata"]["namespace"], dict(budget))
    except ApiException as exc:
        if exc.status != 409:
            raise
        return False
    return True


class MPIJobHook(KubernetesHook):
    """The provider's ``KubernetesHook`` with the MPIJob calls the operator makes."""

    def create_mpijob(self, body: Mapping[str, Any]) -> bool:
        """Create the MPIJob ``body`` in its namespace; False when one of that name exists already."""
        try:
            self.create_custom_object(
                group=GROUP, version=VERSION, plural=PLURAL, body=dict(body), namespace=body["metadata"]["namespace"]
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
            return False
        return True

    def protect_from_disruption(self, name: str, namespace: str, *, pods: int) -> bool:
        """A PodDisruptionBudget over the job's launcher and workers, owned by the MPIJob."""
        owner = {**self.get_mpijob(name, namespace), "apiVersion": API_VERSION, "kind": KIND}
        budget = job_disruption_budget(owner, {JOB_NAME_LABEL: name}, pods)
        return create_disruption_budget(self.api_client, budget)

    def get_mpijob(self, name: str, namespace: str) -> dict[str, Any]:
        """The MPIJob object as the API returns it (transient errors are retried)."""
        return self.get_custom_object(group=GROUP, version=VERSION, plural=PLURAL, name=name, namespace=namespace)

    def get_mpijob_phase(self, name: str, namespace: str) -> JobPhase:
        return job_phase(self.get_mpijob(name, namespace))

    def delete_mpijob(self, name: str, namespace: str) -> bool:
        """Delete the MPIJob and, through owner references, its pods; False when it was gone already."""
        try:
            self.delete_custom_object(
                group=GROUP,
                version=VERSION,
                plural=PLURAL,
                name=name,
                namespace=namespace,
                propagation_policy="Background",
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            return False
        return True

    def wait_for_mpijob(
        self,
        name: str,
        namespace: str,
        *,
        poll_interval: float,
        startup_deadline: float | None = None,
        execution_deadline: float | None = None,
    ) -> dict[str, str]:
        """Poll the job until it Succeeded or Failed or a deadline passed; the event that ended the wait."""
        wait = _Wait(name, namespace, startup_deadline, execution_deadline, self.log)
        while True:
            try:
                phase = self.get_mpijob_phase(name, namespace)
            except Exception as exc:
                return wait.read_failed(exc, ApiException)
            event = wait.observe(phase, time.time())
            if event is not None:
                return event
            time.sleep(poll_interval)

    @generic_api_retry
    def launcher_pods(self, name: str, namespace: str) -> list[Any]:
        """The launcher pods of MPIJob ``name``, oldest first."""
        selector = f"{JOB_NAME_LABEL}={name},{JOB_ROLE_LABEL}=launcher"
        pods = self.core_v1_client.list_namespaced_pod(namespace=namespace, label_selector=selector).items

        def created(pod: Any) -> tuple:
            stamp = pod.metadata.creation_timestamp
            return (stamp is None, stamp, pod.metadata.name)

        return sorted(pods, key=created)

    @generic_api_retry
    def read_launcher_log(self, pod_name: str, namespace: str) -> str:
        response = self.core_v1_client.read_namespaced_pod_log(
            name=pod_name, namespace=namespace, container=LAUNCHER_CONTAINER, _preload_content=False
        )
        return response.data.decode("utf-8", errors="replace")

    def copy_launcher_logs(self, name: str, namespace: str, log: Any, tail_lines: int = 50) -> LauncherLog:
        """Log every launcher pod's output to ``log`` (a task logger); return the newest pod's last
        lines and exit status (the training's result: ``horovodrun`` runs in that container)."""
        pods = self.launcher_pods(name, namespace)
        if not pods:
            log.warning(
                "MPIJob %s/%s has no launcher pod (never started, or already garbage-collected)", namespace, name
            )
            return LauncherLog([], None)
        tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        for attempt, pod in enumerate(pods, start=1):
            pod_name = pod.metadata.name
            phase = getattr(pod.status, "phase", None) or "Unknown"
            log.info("----- launcher pod %s (attempt %d of %d, %s) -----", pod_name, attempt, len(pods), phase)
            try:
                text = self.read_launcher_log(pod_name, namespace)
            except ApiException as exc:
                log.warning("could not read the log of %s: %s %s", pod_name, exc.status, exc.reason)
                continue
            tail.clear()
            for line in text.splitlines():
                log.info("%s", line)
                tail.append(line)
        return LauncherLog(list(tail), container_exit_code(pods[-1], LAUNCHER_CONTAINER))


class AsyncMPIJobHook(AsyncKubernetesHook):
    """The provider's ``AsyncKubernetesHook`` with the MPIJob calls the trigger makes (it has no
    custom-object calls of its own)."""

    @generic_api_retry
    async def get_mpijob(self, name: str, namespace: str) -> dict[str, Any]:
        """The MPIJob object as the API returns it (transient errors are retried)."""
        async with self.get_conn() as api_client:
            api = async_client.CustomObjectsApi(api_client)
            return await api.get_namespaced_custom_object(
                group=GROUP, version=VERSION, namespace=namespace, plural=PLURAL, name=name
            )

    async def get_mpijob_phase(self, name: str, namespace: str) -> JobPhase:
        return job_phase(await self.get_mpijob(name, namespace))

    @generic_api_retry
    async def delete_mpijob(self, name: str, namespace: str) -> bool:
        """Delete the MPIJob and, through owner references, its pods; False when it was gone already."""
        async with self.get_conn() as api_client:
            api = async_client.CustomObjectsApi(api_client)
            try:
                await api.delete_namespaced_custom_object(
                    group=GROUP,
                    version=VERSION,
                    namespace=namespace,
                    plural=PLURAL,
                    name=name,
                    propagation_policy="Background",
                )
            except async_client.ApiException as exc:
                if exc.status != 404:
                    raise
                return False
        return True

    async def wait_for_mpijob(
        self,
        name: str,
        namespace: str,
        *,
        poll_interval: float,
        startup_deadline: float | None = None,
        execution_deadline: float | None = None,
    ) -> dict[str, str]:
        """Poll the job until it Succeeded or Failed or a deadline passed; the event that ended the wait."""
        wait = _Wait(name, namespace, startup_deadline, execution_deadline, self.log)
        while True:
            try:
                phase = await self.get_mpijob_phase(name, namespace)
            except Exception as exc:
                return wait.read_failed(exc, async_client.ApiException)
            event = wait.observe(phase, time.time())
            if event is not None:
                return event
            await asyncio.sleep(poll_interval)


# --- Deployments ------------------------------------------------------------------------------------

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
#: Label the Deployment controller adds to each ReplicaSet's template; not part of ours.
HASH_LABEL = "pod-template-hash"

#: A call through a Service: (method, path, JSON body) -> (HTTP status, decoded reply).
ServiceCall = Callable[[str, str, Any], tuple[int, Any]]


@dataclass(frozen=True)
class RolloutStatus:
    done: bool
    failed: bool
    message: str


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


def rollout_status(deployment: dict[str, Any]) -> RolloutStatus:
    """Whether every replica runs the current template and is available, or the rollout failed."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation", 0)
    if status.get("observedGeneration", 0) < generation:
        return RolloutStatus(False, False, "waiting for the controller to observe the new spec")
    progressing = _condition(status, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return RolloutStatus(False, True, f"rollout exceeded its progress deadline: {progressing.get('message')}")
    wanted = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    total = status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < wanted:
        return RolloutStatus(False, False, f"{updated} of {wanted} replicas updated")
    if total > updated:
        return RolloutStatus(False, False, f"{total - updated} old replicas pending termination")
    if available < updated:
        return RolloutStatus(False, False, f"{available} of {updated} updated replicas available")
    return RolloutStatus(True, False, f"{available} of {wanted} replicas available on the new revision")


def revision(obj: dict[str, Any]) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION, 0))
    except ValueError:
        return 0


def previous_template(
    deployment: dict[str, Any], replicasets: list[dict[str, Any]]
) -> tuple[int, dict[str, Any]] | None:
    """(revision, pod template) ``kubectl rollout undo`` returns to: the newest ReplicaSet revision
    older than the current one among those the Deployment owns; None when there is none."""
    uid = (deployment.get("metadata") or {}).get("uid")
    current = revision(deployment)
    owned = [
        rs
        for rs in replicasets
        if any(
            ref.get("uid") == uid and ref.get("kind") == "Deployment"
            for ref in (rs.get("metadata") or {}).get("ownerReferences") or []
        )
    ]
    older = [rs for rs in owned if 0 < revision(rs) < current]
    if not older:
        return None
    chosen = max(older, key=revision)
    template = dict(chosen["spec"]["template"])
    metadata = dict(template.get("metadata") or {})
    metadata["labels"] = {k: v for k, v in (metadata.get("labels") or {}).items() if k != HASH_LABEL}
    template["metadata"] = metadata
    return revision(chosen), template


#: What a rollout applies; anything else in its objects is a mistake.
ROLLOUT_KINDS = ("Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Ingress")


class DeploymentHook(ApplyHook):
    """The provider's ``KubernetesHook`` with a Deployment's rollout: apply, wait, call, undo."""

    def get_deployment(self, name: str, namespace: str) -> dict[str, Any]:
        """The Deployment as the API returns it, as a plain dict."""
        return self.api_client.sanitize_for_serialization(
            self.apps_v1_client.read_namespaced_deployment(name, namespace)
        )

    def wait_for_rollout(
        self,
        name: str,
        namespace: str,
        *,
        timeout: float,
        poll_interval: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> RolloutStatus:
        """Poll until the rollout is done, failed, or ``timeout`` passed (reported as failed)."""
        deadline = time.monotonic() + timeout
        status = RolloutStatus(False, False, "not checked yet")
        while time.monotonic() < deadline:
            status = rollout_status(self.get_deployment(name, namespace))
            self.log.info("rollout of %s: %s", name, status.message)
            if status.done or status.failed:
                return status
            sleep(poll_interval)
        return RolloutStatus(False, True, f"rollout not finished after {timeout:.0f} s: {status.message}")

    def service_call(self, name: str, namespace: str, port: str = "http") -> ServiceCall:
        """HTTP with JSON to Service ``name`` through the API server's proxy subresource.

        Every outcome is a ``(status, body)`` reply, as from ``eksml.serving.smoke.http_transport``:
        a connection that breaks (a reply cut short, a reset, a timeout) is status 0 with what
        happened, so that a caller's checks fail and its rollback runs instead of an exception
        from urllib3 skipping them.
        """
        from urllib3.exceptions import HTTPError as TransportError

        base = f"/api/v1/namespaces/{namespace}/services/{name}:{port}/proxy"
        api_client = self.api_client

        def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
            try:
                response = api_client.call_api(
                    base + path,
                    method,
                    header_params={"Content-Type": "application/json", "Accept": "application/json"},
                    body=body,
                    auth_settings=["BearerToken"],
                    _preload_content=False,
                    _return_http_data_only=True,
                    _request_timeout=60,
                )
                return response.status, json.loads(response.data)
            except ApiException as exc:
                try:
                    return exc.status, json.loads(exc.body)
                except (TypeError, ValueError):
                    return exc.status, exc.body
            except ValueError as exc:  # a 2xx reply that is not JSON
                return 0, f"unreadable reply: {exc}"
            except (TransportError, OSError) as exc:
                return 0, f"no answer through the API server's proxy: {type(exc).__name__}: {exc}"

        return call

    def rollback_deployment(self, name: str, namespace: str) -> int | None:
        """Return the Deployment to its previous revision's pod template; None if it has none."""
        deployment = self.get_deployment(name, namespace)
        selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
        replicasets = self.api_client.sanitize_for_serialization(
            self.apps_v1_client.list_namespaced_replica_set(namespace, label_selector=selector).items
        )
        previous = previous_template(deployment, replicasets)
        if previous is None:
            return None
        number, template = previous
        self.apps_v1_client.patch_namespaced_deployment(
            name, namespace, [{"op": "replace", "path": "/spec/template", "value": template}]
        )
        self.log.warning("rolled %s back to revision %d", name, number)
        return number
