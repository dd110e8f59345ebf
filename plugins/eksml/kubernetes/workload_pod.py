"""One workload as one pod: ``WorkloadPodOperator`` (``GpuTrainingPodOperator`` for training) and its renderer.

The operator is a ``KubernetesPodOperator`` whose pod comes from a
:class:`~eksml.specs.WorkloadSpec`; in the ``local`` profile the same spec runs as a process
of the image's virtualenv instead. :func:`render_training_pod` builds the pod through the
operator's own ``build_pod_request_obj``, so what is rendered is what would be submitted.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger

from eksml.cluster.target import ClusterTarget, cluster_role_of, resolve_target
from eksml.exits import fail_for_good
from eksml.kubernetes import podparts
from eksml.kubernetes.workload import WorkloadSpecError, coerce_spec
from eksml.local.runner import LocalRunner
from eksml.nodes import node_selector, not_evictable
from eksml.settings import Settings, load_settings
from eksml.specs import WorkloadSpec

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


class WorkloadPodOperator(KubernetesPodOperator):
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
    def resolved_settings(self) -> Settings:
        if self.settings is None:
            self.settings = load_settings(use_airflow_variable=True)
        return self.settings

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
        self.arguments = list(spec.args)
        self.env_vars = podparts.env_vars(spec.env)
        self.container_resources = podparts.resource_requirements(spec.resources)
        self.node_selector = node_selector(spec.node_role)
        self.tolerations = podparts.gpu_tolerations() if podparts.needs_gpu_nodes(spec) else []
        self.service_account_name = settings.training_service_account
        # The training code never talks to the Kubernetes API; AWS access comes from the
        # separately projected IRSA token, which this setting does not affect.
        self.automount_service_account_token = False
        self.security_context = podparts.pod_security_context()
        self.container_security_context = podparts.container_security_context()
        self.labels = {**dict(spec.labels), **(self.labels or {})}
        # The cluster autoscaler must not move a running training pod to consolidate nodes.
        self.annotations = {**not_evictable(), **(self.annotations or {})}
        self.name = self.name or spec.name
        return spec

    def build_pod_request_obj(self, context: Any = None, *, dry_run: bool = False):  # type: ignore[override]
        self.apply_spec()
        return super().build_pod_request_obj(context, dry_run=dry_run)

    # --- running --------------------------------------------------------------------------
    def execute(self, context: Any) -> Any:
        spec = self.apply_spec()
        if self.resolved_settings().profile == "local":
            self._runner = LocalRunner(self.resolved_settings(), self.log)
            self._runner.run(spec, extra_env=self.local_env)
            return None
        return super().execute(context)

    def cleanup(self, pod: Any, remote_pod: Any, *args: Any, **kwargs: Any) -> None:
        """The provider's cleanup, which raises on a failed pod; a container that exited with the
        images' bad-input status fails the task for good instead (a retry cannot succeed and would
        only start another GPU pod)."""
        from airflow.sdk.exceptions import AirflowException, AirflowFailException

        try:
            return super().cleanup(pod, remote_pod, *args, **kwargs)
        except AirflowFailException:
            raise
        except AirflowException as exc:
            fail_for_good(str(exc), container_exit_code(remote_pod, self.base_container_name), exc)
            raise

    def trigger_reentry(self, context: Any, event: dict[str, Any]) -> Any:
        self._apply_settings()  # the resumed task reads the pod through the configured connection
        return super().trigger_reentry(context, event)

    def on_kill(self) -> None:
        if self._runner is not None:
            self._runner.kill()
            return
        self._apply_settings()
        super().on_kill()


def container_exit_code(remote_pod: Any, container: str) -> int | None:
    """Exit status of ``container`` in a finished pod, or None while unknown."""
    statuses = (getattr(getattr(remote_pod, "status", None), "container_statuses", None)) or []
    status = next((s for s in statuses if s.name == container), None)
    terminated = status and status.state and status.state.terminated
    return terminated.exit_code if terminated else None


class EksTargetPodTrigger(KubernetesPodTrigger):
    """The provider's pod trigger, reaching an EKS cluster through a kubeconfig built in the triggerer.

    Only the cluster's name, region and AWS connection id are serialised; the endpoint, CA and
    a token signed with the connection's credentials are fetched when the trigger runs.
    """

    def __init__(self, *, eks_target: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.eks_target = eks_target

    @classmethod
    def from_trigger(cls, trigger: KubernetesPodTrigger, target: ClusterTarget) -> EksTargetPodTrigger:
        _, kwargs = trigger.serialize()
        return cls(eks_target=target.to_dict(), **kwargs)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        return f"{type(self).__module__}.{type(self).__qualname__}", {**kwargs, "eks_target": self.eks_target}

    @cached_property
    def hook(self) -> Any:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook

        config = ClusterTarget.from_dict(self.eks_target).kubeconfig(self.pod_namespace)
        return AsyncKubernetesHook(
            conn_id=None, in_cluster=False, config_dict=config, cluster_context=self.cluster_context
        )


class GpuTrainingPodOperator(WorkloadPodOperator):
    """A training job on a GPU node: ``nvidia.com/gpu`` limits, ``role=train``, the GPU toleration,
    the training service account. Same pod building as :class:`WorkloadPodOperator`, but
    deferrable by default: training runs for hours, and a deferred task holds no worker slot
    while the provider's ``KubernetesPodTrigger`` watches the pod."""

    ui_color = "#c9e4c5"

    def __init__(self, *, deferrable: bool = True, **kwargs: Any) -> None:
        super().__init__(deferrable=deferrable, **kwargs)

    def execute(self, context: Any) -> Any:
        try:
            return super().execute(context)
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

        from eksml.cluster.gpu import describe_gpu_group, unschedulable_reason
        from eksml.eksctl.request import ClusterRequest, train_node_group

        if self.pod is None or self.resolved_settings().profile == "local":
            return
        try:
            reason = unschedulable_reason(self.hook.get_pod(self.pod.metadata.name, self.pod.metadata.namespace))
        except Exception:  # gone or unreadable: the original error stands
            return
        target = self.cluster_target()
        if reason is None or not target.is_eks:
            return
        group = train_node_group(ClusterRequest.from_settings(self.resolved_settings()))
        _, where, quota_hint = describe_gpu_group(
            target.cluster_name, target.region, target.aws_conn_id, group.name, group.instance_types, group.spot
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
