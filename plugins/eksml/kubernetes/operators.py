"""The operators of the training workloads: one pod per workload, or an MPIJob for Horovod.

* :class:`WorkloadPodOperator` (:class:`GpuTrainingPodOperator` for training) - a
  ``KubernetesPodOperator`` whose pod comes from a :class:`~eksml.specs.WorkloadSpec`;
  :func:`render_training_pod` builds that pod through the operator's own
  ``build_pod_request_obj``, so what is rendered is what would be submitted.
* :class:`MPIJobOperator` - hand-written because the provider has no MPIJob operator: it
  creates the job, copies its launcher log and deletes it through :class:`MPIJobHook`, and
  waits through :class:`MPIJobTrigger` (deferred) or the same hook (in the worker).

In the ``local`` profile each runs the same spec as a process of the image's virtualenv
(``horovodrun`` over Gloo for the MPIJob): :class:`~eksml.local.dispatch.ProfileDispatchMixin`
picks ``execute_local`` or ``execute_remote`` once per run. Every one reaches the cluster its
run resolved (:mod:`eksml.cluster.target`). Importing this loads the cncf-kubernetes provider and nothing
heavier (no TensorFlow, MXNet or AWS clients).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator, OnFinishAction
from airflow.providers.cncf.kubernetes.pod_generator import make_safe_label_value
from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger
from airflow.providers.common.compat.sdk import conf
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowNotFoundException
from kubernetes.client.exceptions import ApiException

from eksml.cluster.node_contract import TRAINING_CLUSTER, node_selector, not_evictable
from eksml.cluster.target import ClusterTarget, cluster_role_of, resolve_target
from eksml.exits import exit_code_in, fail_for_good
from eksml.kubernetes import manifests
from eksml.kubernetes.hooks import (
    MPIJobHook,
    container_exit_code,
    create_disruption_budget,
    never_started,
    out_of_memory,
)
from eksml.kubernetes.links import PodLogsLink
from eksml.kubernetes.manifests import RunPolicy, job_name, render_mpijob
from eksml.kubernetes.triggers import EksTargetPodTrigger, MPIJobTrigger
from eksml.local.dispatch import ProfileDispatchMixin
from eksml.local.runner import LocalRunner
from eksml.settings import Settings
from eksml.specs import WorkloadSpec, WorkloadSpecError, coerce_spec

#: KubernetesPodOperator arguments the spec decides; passing one is a mistake, not an override.
SPEC_OWNED_ARGUMENTS = (
    "image",
    "cmds",
    "arguments",
    "env_vars",
    "container_resources",
    "node_selector",
    "tolerations",
    "service_account_name",
    "security_context",
    "container_security_context",
    "full_pod_spec",
    "pod_template_file",
    "pod_template_dict",
)

#: GPU nodes may be scaled up from zero when the pod arrives: minutes, not the default 2.
DEFAULT_STARTUP_TIMEOUT_S = 900


class WorkloadPodOperator(ProfileDispatchMixin, KubernetesPodOperator):
    """Run a single-process :class:`~eksml.specs.WorkloadSpec` as a pod (``aws``) or a process (``local``).

    The pod lands on the nodes of ``spec.node_role``, holds ``spec.resources.gpus`` GPUs and
    tolerates the GPU taint when it needs GPUs or belongs on the (tainted) training nodes.

    :param spec: the workload, or its ``to_dict()`` (templated: usually pulled from XCom).
    :param settings: configuration; ``None`` reads it at run time (environment and the
        ``eksml_settings`` Variable), which is what decides the profile.
    :param local_env: extra environment for the local process only (templated), e.g. the
        endpoint and keys of a loopback S3 server; never part of a pod.
    :param cluster_name: the EKS cluster this run resolved (templated: an ephemeral cluster's
        name from the create task); empty means the settings' cluster for the spec's node role.
        The pod is created, watched and cleaned up there (:mod:`eksml.cluster.target`).
    :param kwargs: ``KubernetesPodOperator`` arguments that the spec does not decide
        (``deferrable``, ``get_logs``, ``on_finish_action``, ``namespace``, ...).
    """

    template_fields = (*KubernetesPodOperator.template_fields, "spec", "local_env", "cluster_name")
    operator_extra_links = (*getattr(KubernetesPodOperator, "operator_extra_links", ()), PodLogsLink())

    def __init__(
        self,
        *,
        spec: WorkloadSpec | Mapping[str, Any] | str,
        settings: Settings | None = None,
        local_env: Mapping[str, str] | None = None,
        cluster_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        given = sorted(set(kwargs) & set(SPEC_OWNED_ARGUMENTS))
        if given:
            raise TypeError(f"{type(self).__name__} takes {', '.join(given)} from the workload spec, not as arguments")
        self._explicit_conn_id = kwargs.pop("kubernetes_conn_id", None)
        kwargs.setdefault("startup_timeout_seconds", DEFAULT_STARTUP_TIMEOUT_S)
        # Keep a failed pod for `kubectl describe`; a finished one is only clutter.
        kwargs.setdefault("on_finish_action", "delete_succeeded_pod")
        super().__init__(kubernetes_conn_id=self._explicit_conn_id, **kwargs)
        self.spec = spec
        self.settings = settings
        self.local_env = local_env
        self.cluster_name = cluster_name
        self._runner: LocalRunner | None = None

    # --- configuration -------------------------------------------------------------------
    def _apply_settings(self) -> Settings:
        settings = self.resolved_settings()
        self.kubernetes_conn_id = self._explicit_conn_id or settings.kubernetes_conn_id or None
        self.namespace = self.namespace or settings.namespace
        return settings

    def cluster_target(self) -> ClusterTarget:
        """Where this pod goes: the run's cluster for the spec's node role (or an explicit connection)."""
        settings = self.resolved_settings()
        return resolve_target(
            settings,
            cluster_role=cluster_role_of(coerce_spec(self.spec).node_role),
            cluster_name=self.cluster_name,
            kubernetes_conn_id=self._explicit_conn_id,
        )

    @cached_property
    def hook(self) -> Any:
        """The provider's hook, for the resolved cluster (an EKS one is built from the EKS API)."""
        self._apply_settings()
        target = self.cluster_target()
        self.log.info("pod %s goes to %s", self.name, target.describe())
        return target.hook()

    def defer(
        self, *, trigger: Any, method_name: str, kwargs: dict[str, Any] | None = None, timeout: Any = None
    ) -> None:
        """Watch the pod from the triggerer through the same cluster target."""
        target = self.cluster_target()
        if isinstance(trigger, KubernetesPodTrigger) and target.is_eks:
            trigger = EksTargetPodTrigger.from_trigger(trigger, target)
        super().defer(trigger=trigger, method_name=method_name, kwargs=kwargs, timeout=timeout)

    def apply_spec(self) -> WorkloadSpec:
        """Set every pod field the spec and settings decide; return the checked spec."""
        settings = self._apply_settings()
        spec = coerce_spec(self.spec)
        if spec.distributed:
            raise WorkloadSpecError(f"workload {spec.name!r} is distributed: run it with MPIJobOperator")
        self.image = settings.image(spec.image)
        self.cmds = spec.container_command()
        self.arguments = manifests.reading_shared_data(spec, settings).argv()
        self.volumes, self.volume_mounts = manifests.shared_data(settings)
        store_env, self.env_from = manifests.store_access(settings)
        self.env_vars = manifests.env_vars(spec.env) + store_env
        self.container_resources = manifests.resource_requirements(spec.resources)
        self.node_selector = node_selector(spec.node_role) if settings.node_roles else {}
        self.tolerations = manifests.gpu_tolerations() if manifests.needs_gpu_nodes(spec) else []
        self.service_account_name = settings.training_service_account
        # The training code never talks to the Kubernetes API; AWS access comes from the
        # separately projected IRSA token, which this setting does not affect.
        self.automount_service_account_token = False
        self.security_context = manifests.pod_security_context()
        self.container_security_context = manifests.container_security_context()
        self.termination_message_policy = manifests.TERMINATION_MESSAGE_POLICY
        self.labels = {**dict(spec.labels), **(self.labels or {})}
        # The cluster autoscaler must not move a running training pod to consolidate nodes.
        self.annotations = {**not_evictable(), **(self.annotations or {})}
        self.name = self.name or spec.name
        return spec

    def build_pod_request_obj(self, context: Any = None, *, dry_run: bool = False):  # type: ignore[override]
        self.apply_spec()
        return super().build_pod_request_obj(context, dry_run=dry_run)

    def get_or_create_pod(self, pod_request_obj: Any, context: Any) -> Any:
        """The provider's, with a PodDisruptionBudget that keeps the running pod from being evicted
        (owned by the pod, so it goes with it) and the link to the pod's CloudWatch logs (the sync and
        deferred paths both come here)."""
        pod_request_obj.metadata.labels = {
            **(pod_request_obj.metadata.labels or {}),
            manifests.JOB_POD_LABEL: make_safe_label_value(pod_request_obj.metadata.name),
        }
        pod = super().get_or_create_pod(pod_request_obj, context)
        uid = pod.metadata.uid or self.pod_manager.read_pod(pod).metadata.uid  # a created pod is the request
        owner = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod.metadata.name, "namespace": pod.metadata.namespace, "uid": uid},
        }
        selector = {manifests.JOB_POD_LABEL: pod_request_obj.metadata.labels[manifests.JOB_POD_LABEL]}
        create_disruption_budget(self.hook.api_client, manifests.job_disruption_budget(owner, selector, pods=1))
        settings = self.resolved_settings()
        cluster = self.cluster_target().cluster_name or settings.cluster_name
        PodLogsLink.persist_for(context, self, settings, cluster, pod.metadata.name)
        return pod

    # --- running --------------------------------------------------------------------------
    def execute_local(self, context: Any, settings: Settings) -> None:
        spec = self.apply_spec()
        PodLogsLink.persist_empty(context)
        self._runner = LocalRunner(settings, self.log)
        self._runner.run(spec, extra_env=self.local_env)

    def execute_remote(self, context: Any, settings: Settings) -> Any:
        self.apply_spec()
        # The provider's execute by name: super() would come back to ProfileDispatchMixin.execute.
        return KubernetesPodOperator.execute(self, context)

    def cleanup(self, pod: Any, remote_pod: Any, *args: Any, **kwargs: Any) -> None:
        """The provider's cleanup, which raises on a failed pod; a container that exited with the
        images' bad-input status fails the task for good instead (a retry cannot succeed and would
        only start another GPU pod), and the error says when the kernel killed the container
        over its memory limit or the container never started (its image, the kubelet's reason)."""
        from airflow.sdk.exceptions import AirflowException, AirflowFailException

        try:
            return super().cleanup(pod, remote_pod, *args, **kwargs)
        except AirflowFailException:
            raise
        except AirflowException as exc:
            fail_for_good(str(exc), container_exit_code(remote_pod, self.base_container_name), exc)
            why = out_of_memory(remote_pod, self.base_container_name) or never_started(
                remote_pod, self.base_container_name
            )
            if why is None:
                raise
            raise AirflowException(f"{exc}\n{why}") from exc

    def process_pod_deletion(self, pod: Any, *, reraise: bool = True) -> bool:
        """The provider's, except that a pod that never started is deleted unless ``keep_pod``
        was asked for: kept for ``kubectl describe`` like a failed one, it would hold its
        requests (a GPU node) for as long as it exists."""
        from airflow.providers.cncf.kubernetes.utils.pod_manager import PodPhase

        phase = getattr(getattr(pod, "status", None), "phase", None)
        if pod is None or phase != PodPhase.PENDING or self.on_finish_action == OnFinishAction.KEEP_POD:
            return super().process_pod_deletion(pod, reraise=reraise)
        self.log.info("deleting pod %s: it never started", pod.metadata.name)
        try:
            self.pod_manager.delete_pod(pod)
        except ApiException:
            if reraise:
                raise
            self.log.exception("could not delete pod %s", pod.metadata.name)
            return False
        return True

    def trigger_reentry(self, context: Any, event: dict[str, Any]) -> Any:
        self._apply_settings()  # the resumed task reads the pod through the configured connection
        return super().trigger_reentry(context, event)

    def on_kill(self) -> None:
        if self._runner is not None:
            self._runner.kill()
            return
        self._apply_settings()
        super().on_kill()


class GpuTrainingPodOperator(WorkloadPodOperator):
    """A training job on a GPU node: ``nvidia.com/gpu`` limits, ``role=train``, the GPU toleration,
    the training service account. Same pod building as :class:`WorkloadPodOperator`; a pod that
    never found a GPU node fails naming the node group and the quota to raise. ``deferrable``
    defaults to ``[operators] default_deferrable``, as in the provider: the training DAG sets it,
    since training runs for hours and a deferred task holds no worker slot while the provider's
    ``KubernetesPodTrigger`` watches the pod."""

    ui_color = "#c9e4c5"

    def execute_remote(self, context: Any, settings: Settings) -> Any:
        try:
            return super().execute_remote(context, settings)
        except Exception as exc:
            self.explain_unscheduled(exc)
            raise

    def trigger_reentry(self, context: Any, event: dict[str, Any]) -> Any:
        try:
            return super().trigger_reentry(context, event)
        except Exception as exc:
            self.explain_unscheduled(exc)
            raise

    def explain_unscheduled(self, exc: BaseException) -> None:
        """A pod still unschedulable when its startup timeout ran out had no GPU node: say which
        node group (with its sizes) and which EC2 quota, instead of a bare startup timeout."""
        from airflow.sdk.exceptions import AirflowFailException

        from eksml.cluster.eks import describe_configured_gpu_group, unschedulable_reason

        if self.pod is None:  # a local process never comes here: only execute_remote asks
            return
        try:
            reason = unschedulable_reason(self.hook.get_pod(self.pod.metadata.name, self.pod.metadata.namespace))
        except Exception:  # gone or unreadable: the original error stands
            return
        target = self.cluster_target()
        if reason is None or not target.is_eks:
            return
        _, where, quota_hint = describe_configured_gpu_group(
            self.resolved_settings(), target.cluster_name, target.region, target.aws_conn_id
        )
        raise AirflowFailException(
            f"no GPU capacity: pod {self.pod.metadata.name} was still unschedulable after "
            f"{self.startup_timeout_seconds} s ({reason}); {where} did not add a node: check the cluster "
            f"autoscaler's events and that the group's max size allows it; {quota_hint}"
        ) from exc


def render_training_pod(
    spec: WorkloadSpec | Mapping[str, Any], settings: Settings, *, name: str | None = None
) -> dict[str, Any]:
    """The V1Pod the ``aws`` profile would submit for ``spec`` (training or any other
    single-process workload), as a plain dict; needs no cluster.

    The pod name is ``name`` (default: the spec's name) without the random suffix a run adds.
    Call it outside a ``with DAG(...)`` block: it builds a throwaway operator.
    """
    from kubernetes.client import ApiClient

    checked = coerce_spec(spec)
    operator = WorkloadPodOperator(
        task_id=f"render-{checked.name}",
        spec=checked,
        settings=settings,
        name=name or checked.name,
        random_name_suffix=False,
    )
    pod = operator.build_pod_request_obj(context=None, dry_run=True)
    return ApiClient().sanitize_for_serialization(pod)


#: Extra time the deferral may run past the execution deadline, so the trigger's own
#: ``timeout`` event (which deletes the job) comes before Airflow's blunt deferral timeout.
_DEFER_GRACE_S = 120


class MPIJobOperator(ProfileDispatchMixin, BaseOperator):
    """Run a distributed training :class:`~eksml.specs.WorkloadSpec` with Horovod.

    ``aws`` profile: creates an MPIJob (launcher + ``spec.replicas`` GPU workers), waits until it
    Succeeds or Fails (deferred to :class:`MPIJobTrigger`, or in the worker), copies the launcher log into the task
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
    :param poll_interval: seconds between status reads.
    :param startup_timeout: how long the job may take to get every worker scheduled and Ready
        and its launcher running (GPU nodes may be scaled up from zero); ``None`` for no limit.
    :param local_env: extra environment for the local run only (templated).
    :param log_tail_lines: launcher lines quoted in a failure message.
    :param kubernetes_conn_id: overrides ``settings.kubernetes_conn_id``.
    :param cluster_name: the EKS cluster this run resolved (templated); empty: the settings'
        training cluster (:mod:`eksml.cluster.target`).
    :param deferrable: wait in the triggerer (:class:`MPIJobTrigger`) rather than in the worker
        (:meth:`MPIJobHook.wait_for_mpijob`, the same state machine); default
        ``[operators] default_deferrable``.
    """

    template_fields = ("spec", "job_name", "local_env", "cluster_name")
    operator_extra_links = (PodLogsLink(),)
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
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
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
        self.deferrable = deferrable
        self._runner: LocalRunner | None = None
        self._job: tuple[str, str] | None = None  # (name, namespace) once created

    # --- configuration -------------------------------------------------------------------
    def cluster_target(self) -> ClusterTarget:
        """The run's training cluster (or an explicit connection)."""
        return resolve_target(
            self.resolved_settings(),
            cluster_role=TRAINING_CLUSTER,
            cluster_name=self.cluster_name,
            kubernetes_conn_id=self.kubernetes_conn_id,
        )

    @cached_property
    def hook(self) -> MPIJobHook:
        target = self.cluster_target()
        self.log.info("MPIJob goes to %s", target.describe())
        return target.hook(hook_class=MPIJobHook)

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
    def checked_spec(self) -> WorkloadSpec:
        """The spec, refused unless it is distributed (a single process is a pod's work)."""
        spec = coerce_spec(self.spec)
        if not spec.distributed:
            raise WorkloadSpecError(f"workload {spec.name!r} is not distributed: run it with GpuTrainingPodOperator")
        return spec

    def execute_local(self, context: Any, settings: Settings) -> None:
        spec = self.checked_spec()
        PodLogsLink.persist_empty(context)
        self._runner = LocalRunner(settings, self.log)
        self._runner.run(spec, extra_env=self.local_env)

    def execute_remote(self, context: Any, settings: Settings) -> Any:
        spec = self.checked_spec()
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
        PodLogsLink.persist_for(
            context, self, settings, self.cluster_target().cluster_name or settings.cluster_name, name
        )
        if not self.hook.create_mpijob(body):
            # Same task try, same name: this try created it before it was interrupted.
            self.log.info("MPIJob %s/%s exists already: waiting on it", namespace, name)
        self.hook.protect_from_disruption(name, namespace, pods=spec.replicas + 1)
        if self.deferrable:
            self.defer(
                trigger=self.make_trigger(name, namespace, context),
                method_name="execute_complete",
                timeout=self._defer_timeout(context),
            )
        try:
            event = self.hook.wait_for_mpijob(
                name,
                namespace,
                poll_interval=self.poll_interval,
                startup_deadline=self._startup_deadline(),
                execution_deadline=self._execution_deadline(context),
            )
        except BaseException:  # Airflow's execution_timeout, or the task stopped: stop the training too
            self._delete_quietly()
            raise
        return self.execute_complete(context, event)

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
            startup_deadline=self._startup_deadline(),
            execution_deadline=self._execution_deadline(context),
        )

    def _startup_deadline(self) -> float | None:
        return None if self.startup_timeout is None else time.time() + self.startup_timeout

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
        """The wait ended (or the trigger fired): copy the launcher log, then succeed or fail with its tail."""
        name, namespace, status = event["name"], event["namespace"], event["status"]
        self._job = (name, namespace)
        try:
            tail, exit_code = self.hook.copy_launcher_logs(name, namespace, self.log, self.log_tail_lines)
        except ApiException as exc:  # the job's outcome matters more than its log
            self.log.warning(
                "could not list the launcher pods of %s/%s: %s %s", namespace, name, exc.status, exc.reason
            )
            tail, exit_code = [], None
        if status == "success":
            self.log.info("MPIJob %s/%s succeeded", namespace, name)
            return {"name": name, "namespace": namespace, "phase": event.get("phase", "")}
        if status in ("timeout", "error"):  # still holding GPUs, or half-gone: nothing more will come of it
            self._delete_quietly()
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
        self.hook.delete_mpijob(name, namespace)

    def _delete_quietly(self) -> None:
        try:
            self.delete_job()
        except Exception:  # report the job's failure, not the clean-up's
            self.log.exception("could not delete MPIJob %s", "/".join(reversed(self._job or ())))

    def on_kill(self) -> None:
        if self._runner is not None:
            self._runner.kill()
            return
        self._delete_quietly()
