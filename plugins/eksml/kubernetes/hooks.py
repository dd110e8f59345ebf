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
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook, KubernetesHook
from airflow.providers.cncf.kubernetes.kubernetes_helper_functions import generic_api_retry
from kubernetes.client.exceptions import ApiException
from kubernetes_asyncio import client as async_client

from eksml.kubernetes.manifests import GROUP, JOB_NAME_LABEL, JOB_ROLE_LABEL, LAUNCHER_CONTAINER, PLURAL, VERSION

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


def container_exit_code(remote_pod: Any, container: str) -> int | None:
    """Exit status of ``container`` in a finished pod, or None while unknown."""
    statuses = (getattr(getattr(remote_pod, "status", None), "container_statuses", None)) or []
    status = next((s for s in statuses if s.name == container), None)
    terminated = status and status.state and status.state.terminated
    return terminated.exit_code if terminated else None


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
