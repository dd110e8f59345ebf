"""``MPIJobOperator``: distributed Horovod training as a Kubeflow MPIJob, or ``horovodrun`` locally.

Hand-written because the cncf-kubernetes provider has no MPIJob operator. It composes the
provider's pieces: ``KubernetesHook.create_custom_object`` / ``delete_custom_object`` for the
job, :class:`~eksml.kubernetes.mpijob_trigger.MPIJobTrigger` (on ``AsyncKubernetesHook``) to
wait deferrably, and the hook's core client for the launcher's log.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
from airflow.providers.cncf.kubernetes.pod_generator import make_safe_label_value
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowNotFoundException
from kubernetes.client.exceptions import ApiException

from eksml.cluster.target import TRAINING, ClusterTarget, resolve_target
from eksml.exits import exit_code_in, fail_for_good
from eksml.kubernetes.launcher_logs import copy_launcher_logs
from eksml.kubernetes.mpijob import GROUP, PLURAL, VERSION, RunPolicy, job_name, render_mpijob
from eksml.kubernetes.mpijob_trigger import MPIJobTrigger
from eksml.kubernetes.workload import WorkloadSpecError, coerce_spec
from eksml.local.runner import LocalRunner
from eksml.settings import Settings, load_settings
from eksml.specs import WorkloadSpec

#: Extra time the deferral may run past the execution deadline, so the trigger's own
#: ``timeout`` event (which deletes the job) comes before Airflow's blunt deferral timeout.
_DEFER_GRACE_S = 120


class MPIJobOperator(BaseOperator):
    """Run a distributed training :class:`~eksml.specs.WorkloadSpec` with Horovod.

    ``aws`` profile: creates an MPIJob (launcher + ``spec.replicas`` GPU workers), defers to
    :class:`MPIJobTrigger` until it Succeeds or Fails, copies the launcher log into the task
    log, and fails with the launcher's last lines when the job failed. The job is deleted when
    the task is killed (``on_kill``, or the trigger's ``on_kill`` while deferred) and when
    ``execution_timeout`` expires. ``local`` profile: ``horovodrun -np N`` over Gloo on this
    machine, with the same entrypoint and arguments.

    :param spec: the distributed workload, or its ``to_dict()`` (templated: usually from XCom).
    :param settings: configuration; ``None`` reads it at run time.
    :param job_name: MPIJob name (templated); default: the spec's name plus a digest of the
        task try, so a retry never collides with the job of an earlier try.
    :param run_policy: retries, TTL and deadline of the job; by default the Kubernetes-side
        deadline is ``execution_timeout`` when one is set.
    :param poll_interval: seconds between status reads in the triggerer.
    :param startup_timeout: how long the job may take to get every worker scheduled and Ready
        and its launcher running (GPU nodes may be scaled up from zero); ``None`` for no limit.
    :param local_env: extra environment for the local run only (templated).
    :param log_tail_lines: launcher lines quoted in a failure message.
    :param kubernetes_conn_id: overrides ``settings.kubernetes_conn_id``.
    :param cluster_name: the EKS cluster this run resolved (templated); empty: the settings'
        training cluster (:mod:`eksml.cluster.target`).
    """

    template_fields = ("spec", "job_name", "local_env", "cluster_name")
    ui_color = "#d6e4f0"

    def __init__(
        self,
        *,
        spec: WorkloadSpec | Mapping[str, Any] | str,
        settings: Settings | None = None,
        job_name: str | None = None,
        run_policy: RunPolicy | None = None,
        poll_interval: float = 30.0,
        startup_timeout: timedelta | float | None = timedelta(minutes=30),
        local_env: Mapping[str, str] | None = None,
        log_tail_lines: int = 50,
        kubernetes_conn_id: str | None = None,
        cluster_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval}")
        self.spec = spec
        self.settings = settings
        self.job_name = job_name
        self.run_policy = run_policy
        self.poll_interval = poll_interval
        self.startup_timeout = (
            startup_timeout.total_seconds() if isinstance(startup_timeout, timedelta) else startup_timeout
        )
        self.local_env = local_env
        self.log_tail_lines = log_tail_lines
        self.kubernetes_conn_id = kubernetes_conn_id
        self.cluster_name = cluster_name
        self._runner: LocalRunner | None = None
        self._job: tuple[str, str] | None = None  # (name, namespace) once created

    # --- configuration -------------------------------------------------------------------
    def resolved_settings(self) -> Settings:
        if self.settings is None:
            self.settings = load_settings(use_airflow_variable=True)
        return self.settings

    def cluster_target(self) -> ClusterTarget:
        """The run's training cluster (or an explicit connection)."""
        return resolve_target(
            self.resolved_settings(),
            cluster_role=TRAINING,
            cluster_name=self.cluster_name,
            kubernetes_conn_id=self.kubernetes_conn_id,
        )

    @cached_property
    def hook(self) -> KubernetesHook:
        target = self.cluster_target()
        self.log.info("MPIJob goes to %s", target.describe())
        return target.hook()

    def effective_run_policy(self) -> RunPolicy:
        if self.run_policy is not None:
            return self.run_policy
        if self.execution_timeout is not None:
            return RunPolicy(active_deadline_seconds=max(int(self.execution_timeout.total_seconds()), 1))
        return RunPolicy()

    @staticmethod
    def task_labels(context: Mapping[str, Any]) -> dict[str, str]:
        """Labels that tie the job to its task try (``kubectl get mpijobs -l eksml/task-id=...``)."""
        ti = context["ti"]
        return {
            "eksml/task-id": make_safe_label_value(ti.task_id),
            "eksml/run-id": make_safe_label_value(ti.run_id),
            "eksml/try-number": str(ti.try_number),
        }

    @staticmethod
    def try_key(context: Mapping[str, Any]) -> str:
        ti = context["ti"]
        return f"{ti.dag_id}/{ti.task_id}/{ti.run_id}/{ti.map_index}/{ti.try_number}"

    # --- running --------------------------------------------------------------------------
    def execute(self, context: Any) -> Any:
        settings = self.resolved_settings()
        spec = coerce_spec(self.spec)
        if not spec.distributed:
            raise WorkloadSpecError(f"workload {spec.name!r} is not distributed: run it with GpuTrainingPodOperator")
        if settings.profile == "local":
            self._runner = LocalRunner(settings, self.log)
            self._runner.run(spec, extra_env=self.local_env)
            return None

        name = self.job_name or job_name(spec.name, self.try_key(context))
        namespace = settings.namespace
        body = render_mpijob(
            spec, settings, name, run_policy=self.effective_run_policy(), labels=self.task_labels(context)
        )
        self._job = (name, namespace)
        self.log.info(
            "creating MPIJob %s/%s: %d worker(s) x %d slot(s), image %s",
            namespace,
            name,
            spec.replicas,
            spec.slots_per_replica,
            settings.image(spec.image),
        )
        try:
            self.hook.create_custom_object(group=GROUP, version=VERSION, plural=PLURAL, body=body, namespace=namespace)
        except ApiException as exc:
            if exc.status != 409:
                raise
            # Same task try, same name: this try created it before it was interrupted.
            self.log.info("MPIJob %s/%s exists already: waiting on it", namespace, name)
        self.defer(
            trigger=self.make_trigger(name, namespace, context),
            method_name="execute_complete",
            timeout=self._defer_timeout(context),
        )

    def make_trigger(self, name: str, namespace: str, context: Mapping[str, Any]) -> MPIJobTrigger:
        target = self.cluster_target()
        conn_id, extras = target.conn_id, None
        if conn_id:
            try:  # resolved here, like KubernetesPodOperator does, so the triggerer need not know it
                extras = self.hook.get_connection(conn_id).extra_dejson
            except AirflowNotFoundException:
                extras = None
        return MPIJobTrigger(
            name=name,
            namespace=namespace,
            kubernetes_conn_id=conn_id,
            connection_extras=extras,
            eks_target=target.to_dict() if target.is_eks else None,
            poll_interval=self.poll_interval,
            startup_deadline=None if self.startup_timeout is None else time.time() + self.startup_timeout,
            execution_deadline=self._execution_deadline(context),
        )

    def _execution_deadline(self, context: Mapping[str, Any]) -> float | None:
        if self.execution_timeout is None:
            return None
        start = getattr(context["ti"], "start_date", None)
        started = start.timestamp() if start is not None else time.time()
        return started + self.execution_timeout.total_seconds()

    def _defer_timeout(self, context: Mapping[str, Any]) -> timedelta | None:
        deadline = self._execution_deadline(context)
        if deadline is None:
            return None
        return timedelta(seconds=max(deadline - time.time(), 0) + _DEFER_GRACE_S)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, str]:
        """Resume after the trigger fired: copy the launcher log, then succeed or fail with its tail."""
        name, namespace, status = event["name"], event["namespace"], event["status"]
        self._job = (name, namespace)
        try:
            tail, exit_code = copy_launcher_logs(self.hook, name, namespace, self.log, self.log_tail_lines)
        except ApiException as exc:  # the job's outcome matters more than its log
            self.log.warning(
                "could not list the launcher pods of %s/%s: %s %s", namespace, name, exc.status, exc.reason
            )
            tail, exit_code = [], None
        if status == "success":
            self.log.info("MPIJob %s/%s succeeded", namespace, name)
            return {"name": name, "namespace": namespace, "phase": event.get("phase", "")}
        if status in ("timeout", "error"):
            try:  # still holding GPUs, or half-gone: nothing more will come of it
                self.delete_job()
            except Exception:  # report the job's failure, not the clean-up's
                self.log.exception("could not delete MPIJob %s/%s", namespace, name)
        detail = ": ".join(part for part in (event.get("reason"), event.get("message")) if part)
        lines = "\n".join(tail) if tail else "(no launcher output)"
        message = (
            f"MPIJob {namespace}/{name} {event.get('phase', status)} [{status}] {detail}\n"
            f"last {len(tail)} launcher log line(s):\n{lines}"
        )
        if status == "failed":  # the launcher's status, else the one a pod failure policy quotes
            fail_for_good(message, exit_code if exit_code is not None else exit_code_in(event.get("message")))
        raise AirflowException(message)

    def delete_job(self) -> None:
        """Delete the job this task created (its pods go with it); a missing job is fine."""
        if self._job is None:
            return
        name, namespace = self._job
        self.log.info("deleting MPIJob %s/%s", namespace, name)
        try:
            self.hook.delete_custom_object(
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

    def on_kill(self) -> None:
        if self._runner is not None:
            self._runner.kill()
            return
        try:
            self.delete_job()
        except Exception:
            self.log.exception("could not delete MPIJob %s", self._job)
