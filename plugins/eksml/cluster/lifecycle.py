"""Airflow operator that creates (or reuses and scales) and deletes EKS clusters with eksctl.

Design, and why:

* Decisions are quick and made in the worker: ``eksctl get cluster`` / ``get nodegroup``
  say whether to create, reuse (never recreate), add missing node groups or scale.
* Long commands (``create cluster``, ``create nodegroup``, ``delete cluster --wait``: 10-25
  minutes) run in :class:`~eksml.cluster.triggers.EksctlCommandTrigger` in the triggerer, so
  no worker slot is held while CloudFormation works (see that module for why eksctl runs
  there rather than detached from the worker). ``deferrable=False`` runs the same trigger
  code in the worker, for deployments without a triggerer.
* A cluster found ``CREATING`` (for example after a triggerer restart) is waited for with
  the amazon provider's :class:`EksCreateClusterTrigger` (an EKS API waiter), then
  converged with eksctl's idempotent commands (OIDC provider, IRSA roles, node groups).
* A create that fails is never deleted and never retried by Airflow: each delete/create cycle
  bills the node groups again and fails the same way. The task fails with eksctl's reason,
  what exists now and the cleanup command; running ``create`` again resumes (the cluster is
  reused, its OIDC provider, IRSA roles and missing node groups added).
* ``cluster_mode`` serves the training DAG: ``existing`` only checks that the shared cluster
  is ACTIVE (and never deletes it); ``ephemeral`` creates a cluster named and tagged after
  the DAG run, and delete refuses any cluster that does not carry that run's tag.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from eksml.cluster.config import ClusterConfig, ClusterConfigError, render_yaml
from eksml.cluster.hooks import (
    EksctlError,
    EksctlHook,
    associate_oidc_args,
    create_cluster_args,
    create_nodegroups_args,
    create_service_accounts_args,
    delete_cluster_args,
    scale_nodegroup_args,
    write_kubeconfig_args,
)
from eksml.cluster.node_contract import (
    CLUSTER_MODES,
    CLUSTER_ROLES,
    EPHEMERAL_CLUSTER,
    EXISTING_CLUSTER,
    INFERENCE_CLUSTER,
    SHARED_CLUSTER,
    TRAINING_CLUSTER,
)
from eksml.cluster.request import (
    INFERENCE_GROUP,
    PROJECT_TAG,
    TRAIN_GROUP,
    ClusterRequest,
    build_cluster_configs,
    runs_karpenter,
)
from eksml.cluster.triggers import EksctlCommandTrigger, file_arg, first_event, step
from eksml.settings import FROM_SETTINGS, FromSettings, Settings, SettingsMixin

if TYPE_CHECKING:
    from airflow.sdk import Context

ACTIONS = ("create", "scale", "delete")
EPHEMERAL_TAG = "eksml/ephemeral-run"
#: The DAG run an ephemeral cluster was made for, so the janitor can ask whether it still runs.
DAG_ID_TAG, RUN_ID_TAG = "eksml/dag-id", "eksml/run-id"


def run_hash(run_id: str) -> str:
    """Short stable id of a DAG run, safe in a cluster name and a tag value."""
    return hashlib.sha256(run_id.encode()).hexdigest()[:10]


def ephemeral_cluster_name(base: str, run_id: str) -> str:
    return f"{base}-run-{run_hash(run_id)}"


def _run_tags(context: Context) -> dict[str, str]:
    dag = context.get("dag")
    return {RUN_ID_TAG: context["run_id"], **({DAG_ID_TAG: dag.dag_id} if dag is not None else {})}


def _resumed(event: dict[str, Any], key: str, given: Any, default: Any) -> Any:
    """Resume state from the deferral kwargs, else from the event's passthrough."""
    if given is not None:
        return given
    return (event.get("passthrough") or {}).get(key, default)


class EksctlClusterOperator(SettingsMixin, BaseOperator):
    """Create/reuse, scale or delete the project's EKS cluster(s) with the eksctl CLI.

    :param action: ``create`` (idempotent: reuse, add missing node groups, scale), ``scale``
        or ``delete``. Templated, so a DAG param can choose it.
    :param cluster: :class:`~eksml.cluster.request.ClusterRequest` overrides (templated;
        text values are coerced, e.g. ``{"train_nodes": "{{ params.train_nodes }}"}``).
    :param cluster_mode: None (lifecycle DAG), ``existing`` or ``ephemeral`` (training DAG).
    :param cluster_role: ``all``, ``training`` or ``inference``: which of the dedicated
        clusters to act on (a shared cluster serves both roles).
    :param aws_conn_id: Airflow AWS connection whose credentials eksctl receives; default the
        settings' ``lifecycle_aws_conn_id``, else their ``aws_conn_id``.
    :param deferrable: run long eksctl commands in the triggerer; default Airflow's
        ``[operators] default_deferrable``.
    :param settings: configuration; ``None`` resolves it at run time.
    :param kubeconfig_path: also write a kubeconfig there (``eksctl utils write-kubeconfig``).
    """

    template_fields: Sequence[str] = ("action", "cluster", "cluster_mode", "cluster_role", "kubeconfig_path")
    template_fields_renderers = {"cluster": "json"}
    ui_color = "#ff9900"

    def __init__(
        self,
        *,
        action: str = "create",
        cluster: dict[str, Any] | None = None,
        cluster_mode: str | None = None,
        cluster_role: str = SHARED_CLUSTER,
        aws_conn_id: str | None | FromSettings = FROM_SETTINGS,
        eksctl_path: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        kubeconfig_path: str | None = None,
        create_timeout: timedelta = timedelta(minutes=50),
        delete_timeout: timedelta = timedelta(minutes=40),
        poll_interval: int = 30,
        settings: Settings | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.action = action
        self.cluster = cluster or {}
        self.cluster_mode = cluster_mode
        self.cluster_role = cluster_role
        self.aws_conn_id = aws_conn_id
        self.eksctl_path = eksctl_path
        self.deferrable = deferrable
        self.kubeconfig_path = kubeconfig_path
        self.create_timeout = create_timeout
        self.delete_timeout = delete_timeout
        self.poll_interval = poll_interval
        self._running: EksctlCommandTrigger | None = None

    def resolved_aws_conn_id(self) -> str | None:
        """eksctl runs as the lifecycle identity: ``Settings.lifecycle_aws_conn_id`` when set."""
        if self.aws_conn_id is FROM_SETTINGS:
            return self.resolved_settings().lifecycle_connection
        return self.aws_conn_id

    # --- inputs -------------------------------------------------------------------------
    def _request(self, context: Context) -> ClusterRequest:
        request = ClusterRequest.from_settings(self.resolved_settings(), **dict(self.cluster))
        if self._mode() == EPHEMERAL_CLUSTER:
            tag = run_hash(context["run_id"])
            request = request.with_overrides(
                {
                    "name": ephemeral_cluster_name(request.name, context["run_id"]),
                    "tags": {**request.tags, EPHEMERAL_TAG: tag, **_run_tags(context)},
                }
            )
        return request

    def _caller_principal(self, region: str) -> str:
        """The IAM principal eksctl will create the cluster as (the AWS connection's identity)."""
        from airflow.providers.amazon.aws.hooks.sts import StsHook

        from eksml.cluster.iam import principal_arn

        caller = StsHook(aws_conn_id=self.resolved_aws_conn_id(), region_name=region).conn.get_caller_identity()["Arn"]
        return principal_arn(caller)

    def _mode(self) -> str | None:
        mode = (self.cluster_mode or "").strip() or None
        if mode not in (None, *CLUSTER_MODES):
            raise AirflowFailException(f"cluster_mode must be one of {CLUSTER_MODES}, got {mode!r}")
        return mode

    def _configs(self, context: Context) -> list[ClusterConfig]:
        """Validated configs this task acts on; bad input fails here, before any eksctl call."""
        action = str(self.action).strip()
        if action not in ACTIONS:
            raise AirflowFailException(f"action must be one of {ACTIONS}, got {action!r}")
        if self.cluster_role not in CLUSTER_ROLES:
            raise AirflowFailException(f"cluster_role must be one of {CLUSTER_ROLES}, got {self.cluster_role!r}")
        try:
            request = self._request(context)
            configs = build_cluster_configs(request)  # bad input fails here, before any AWS call
            if action == "create" and self._mode() != EXISTING_CLUSTER and not request.creator_arn:
                # the access entries depend on who creates the cluster (the AWS connection's identity)
                configs = build_cluster_configs(
                    request.with_overrides({"creator_arn": self._caller_principal(request.region)})
                )
        except ClusterConfigError as exc:
            raise AirflowFailException(str(exc)) from exc
        wanted = {TRAINING_CLUSTER: TRAIN_GROUP, INFERENCE_CLUSTER: INFERENCE_GROUP}.get(self.cluster_role)
        if wanted:
            configs = [c for c in configs if any(ng.name == wanted for ng in c.node_groups)]
        return configs

    def _client(self, region: str) -> EksctlHook:
        hook = EksctlHook(region, self.resolved_aws_conn_id(), self.eksctl_path, log_line=self.log.info)
        try:
            binary = hook.binary  # a missing binary fails before any connection lookup
            hook.environment()
            version = hook.check_version()
        except EksctlError as exc:
            raise AirflowFailException(str(exc)) from exc
        self.log.info("using %s (eksctl %s)", binary, ".".join(map(str, version)))
        return hook

    # --- entry point --------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        configs = self._configs(context)
        action, mode = str(self.action).strip(), self._mode()
        if mode == EXISTING_CLUSTER:
            return self._check_existing(configs, action)
        client = self._client(configs[0].region)
        if action == "create":
            return self._create(context, client, configs, created=[], recovering=False)
        if action == "scale":
            return self._scale(context, client, configs)
        return self._delete(context, client, configs)

    def _check_existing(self, configs: list[ClusterConfig], action: str) -> dict[str, Any]:
        """Training on the shared cluster: fail early if it is not ACTIVE; never delete it."""
        if action == "delete":
            self.log.info("cluster mode 'existing': the shared cluster is kept")
            return {"action": "none", "clusters": []}
        from airflow.providers.amazon.aws.hooks.eks import ClusterStates, EksHook

        clusters = []
        for cfg in configs:
            state = EksHook(aws_conn_id=self.resolved_aws_conn_id(), region_name=cfg.region).get_cluster_state(
                clusterName=cfg.name
            )
            if state != ClusterStates.ACTIVE:
                raise AirflowFailException(
                    f"cluster {cfg.name!r} in {cfg.region} is {state.value}, not ACTIVE: create it with the "
                    "eks_cluster DAG (action=create) or run with cluster=ephemeral"
                )
            clusters.append({"name": cfg.name, "region": cfg.region, "status": state.value, "created": False})
        return self._result("check", clusters, configs)

    # --- Karpenter's AWS resources ------------------------------------------------------
    def _karpenter_hook(self, region: str) -> Any:
        from eksml.cluster.karpenter_aws import KarpenterAwsHook

        return KarpenterAwsHook(self.resolved_aws_conn_id(), region)

    def _karpenter_clusters(self, context: Context, names: Sequence[str]) -> list[str]:
        request = self._request(context)
        return [name for name in names if runs_karpenter(request, name)]

    def _ensure_karpenter(self, cfg: ClusterConfig, *, spot: bool) -> None:
        """The nodes' role, interruption queue and rules of a Karpenter cluster, before eksctl runs:
        the cluster's access entry names the role (``eksml.cluster.karpenter_aws``)."""
        try:
            made = self._karpenter_hook(cfg.region).ensure(cfg.name, cfg.tags, spot=spot)
        except Exception as exc:
            raise AirflowException(f"Karpenter's AWS resources for cluster {cfg.name!r}: {exc}") from exc
        self.log.info("Karpenter resources of %s: %s", cfg.name, made)

    def _delete_karpenter(self, context: Context, names: Sequence[str], region: str) -> None:
        """What ``_ensure_karpenter`` made, once its cluster is gone (also when the cluster was
        already gone: a teardown that failed half-way is finished)."""
        for name in self._karpenter_clusters(context, names):
            deleted = self._karpenter_hook(region).delete(name)
            self.log.info("Karpenter resources of %s deleted: %s", name, ", ".join(deleted) or "none left")

    # --- create / reuse -----------------------------------------------------------------
    def _create(
        self,
        context: Context,
        client: EksctlHook,
        configs: list[ClusterConfig],
        *,
        created: list[str],
        recovering: bool,
    ) -> dict[str, Any]:
        steps: list[dict[str, Any]] = []
        files: dict[str, str] = {}
        karpenter = self._karpenter_clusters(context, [cfg.name for cfg in configs])
        for cfg in configs:
            fname = f"{cfg.name}.yaml"
            if cfg.name in karpenter:
                self._ensure_karpenter(cfg, spot=self._request(context).spot)
            state = client.get_cluster(cfg.name, cfg.region)
            if state is None:
                self.log.info("cluster %s does not exist: creating it", cfg.name)
                files[fname] = render_yaml(cfg)
                steps.append(
                    step(
                        f"create cluster {cfg.name}",
                        create_cluster_args(file_arg(fname)),
                        unless_cluster_exists=(cfg.name, cfg.region),
                    )
                )
                if cfg.name not in created:
                    created.append(cfg.name)
                continue
            if state.status in ("CREATING", "UPDATING"):
                self.log.info("cluster %s is %s: waiting for ACTIVE before converging", cfg.name, state.status)
                return self._wait_for_active(context, cfg, created)
            if state.status != "ACTIVE":
                raise AirflowException(f"cluster {cfg.name!r} is {state.status}: it can neither be reused nor created")
            self.log.info("cluster %s exists (ACTIVE): reusing it, never recreating", cfg.name)
            # one the project made may be the remains of a failed create: resume it (idempotent)
            resume = recovering or PROJECT_TAG in state.tags
            steps.extend(self._converge_steps(client, cfg, files, resume))
        if not steps:
            return self._finish(context, [], client)
        return self._run_steps(context, steps, files, "execute_complete", {"created": created}, self.create_timeout)

    def _converge_steps(
        self, client: EksctlHook, cfg: ClusterConfig, files: dict[str, str], recovering: bool
    ) -> list[dict]:
        """Steps that bring an existing cluster to ``cfg`` without recreating anything."""
        fname = f"{cfg.name}.yaml"
        steps = []
        if recovering:  # a create was interrupted: OIDC and IRSA roles may be missing
            files[fname] = render_yaml(cfg)
            steps.append(step(f"associate OIDC provider {cfg.name}", associate_oidc_args(file_arg(fname))))
            steps.append(step(f"create IRSA roles {cfg.name}", create_service_accounts_args(file_arg(fname))))
        existing = client.get_nodegroups(cfg.name, cfg.region)
        missing = [ng.name for ng in cfg.node_groups if ng.name not in existing]
        if missing:
            self.log.info("cluster %s lacks node group(s) %s: adding them", cfg.name, ", ".join(missing))
            files[fname] = render_yaml(cfg)
            steps.append(step(f"create node groups {','.join(missing)}", create_nodegroups_args(file_arg(fname))))
        for ng in cfg.node_groups:
            have = existing.get(ng.name)
            if have is None:
                continue
            if have.instance_types and not set(have.instance_types) <= set(ng.instance_types):
                self.log.warning(
                    "node group %s runs %s, not %s: changing instance types needs a new node group; keeping it",
                    ng.name,
                    ",".join(have.instance_types),
                    ",".join(ng.instance_types),
                )
            if (have.min_size, have.desired, have.max_size) != (ng.min_size, ng.desired_capacity, ng.max_size):
                self.log.info(
                    "scaling %s/%s from %s/%s/%s to %s/%s/%s (min/desired/max)",
                    cfg.name,
                    ng.name,
                    have.min_size,
                    have.desired,
                    have.max_size,
                    ng.min_size,
                    ng.desired_capacity,
                    ng.max_size,
                )
                args = scale_nodegroup_args(
                    cfg.name, cfg.region, ng.name, ng.desired_capacity, ng.min_size, ng.max_size
                )
                steps.append(step(f"scale {cfg.name}/{ng.name}", args, long=False))
        return steps

    def _wait_for_active(self, context: Context, cfg: ClusterConfig, created: list[str]) -> dict[str, Any]:
        from airflow.providers.amazon.aws.triggers.eks import EksCreateClusterTrigger

        trigger = EksCreateClusterTrigger(
            cluster_name=cfg.name,
            waiter_delay=self.poll_interval,
            waiter_max_attempts=max(1, int(self.create_timeout.total_seconds() // max(self.poll_interval, 1))),
            aws_conn_id=self.resolved_aws_conn_id(),
            region_name=cfg.region,
        )
        kwargs = {"created": created}
        if self.deferrable:
            self.defer(trigger=trigger, method_name="execute_after_wait", kwargs=kwargs, timeout=self.create_timeout)
        return self.execute_after_wait(context, asyncio.run(first_event(trigger)), **kwargs)

    def execute_after_wait(
        self, context: Context, event: dict[str, Any], created: list[str] | None = None
    ) -> dict[str, Any]:
        created = _resumed(event, "created", created, [])
        if event.get("status") != "success":
            return self._failed(context, f"waiting for the cluster to become ACTIVE failed: {event}", created)
        configs = self._configs(context)
        return self._create(context, self._client(configs[0].region), configs, created=created, recovering=True)

    def execute_complete(
        self, context: Context, event: dict[str, Any], created: list[str] | None = None
    ) -> dict[str, Any]:
        created = _resumed(event, "created", created, [])
        status = event.get("status")
        if status == "success":
            configs = self._configs(context)
            return self._finish(context, created, self._client(configs[0].region))
        if status == "exists":
            cfg = next(c for c in self._configs(context) if c.name == event["cluster"])
            return self._wait_for_active(context, cfg, created)
        tail = "\n".join(event.get("tail") or [])
        return self._failed(context, f"{event.get('message', event)}\n{tail}".strip(), created)

    def _failed(self, context: Context, message: str, created: list[str]) -> dict[str, Any]:
        """A failed create is never deleted nor retried: both would repeat the bill and the failure."""
        if not created:
            raise AirflowException(message)
        region = self._configs(context)[0].region
        left = []
        for name in created:
            try:
                state = self._client(region).get_cluster(name, region)
            except Exception as exc:  # the reason below matters more than this look-up
                left.append(f"{name}: state unknown ({type(exc).__name__})")
                continue
            left.append(f"{name}: {state.status if state else 'no EKS cluster (its CloudFormation stacks may remain)'}")
        cleanup = "; ".join(" ".join(["eksctl", *delete_cluster_args(name, region)]) for name in created)
        raise AirflowFailException(
            f"{message}\nCreating {', '.join(created)} failed after it started; nothing was deleted or re-created "
            f"automatically. Now: {'; '.join(left)}.\nResume: fix the cause, then run action=create again (the "
            f"cluster is reused, its OIDC provider, IRSA roles and missing node groups added).\nOr remove "
            f"everything it made: {cleanup}"
        )

    def _finish(self, context: Context, created: list[str], client: EksctlHook) -> dict[str, Any]:
        clusters = []
        configs = self._configs(context)
        for cfg in configs:
            state = client.get_cluster(cfg.name, cfg.region)
            groups = client.get_nodegroups(cfg.name, cfg.region) if state else {}
            clusters.append(
                {
                    "name": cfg.name,
                    "region": cfg.region,
                    "status": state.status if state else "NONEXISTENT",
                    "kubernetes_version": state.version if state else None,
                    "created": cfg.name in created,
                    "nodegroups": {
                        n: {
                            "status": g.status,
                            "min": g.min_size,
                            "desired": g.desired,
                            "max": g.max_size,
                            "instance_type": ",".join(g.instance_types) or None,
                        }
                        for n, g in groups.items()
                    },
                }
            )
            if self.kubeconfig_path:
                result = client.captured(write_kubeconfig_args(cfg.name, cfg.region, self.kubeconfig_path))
                if result.returncode != 0:
                    raise AirflowException(f"eksctl utils write-kubeconfig failed: {' '.join(result.tail)}")
        return self._result(str(self.action).strip(), clusters, configs)

    @staticmethod
    def _result(action: str, clusters: list[dict[str, Any]], configs: list[ClusterConfig]) -> dict[str, Any]:
        """XCom value: names, states and sizes only (no credentials, no endpoints)."""

        def named(group: str) -> str | None:
            return next((c.name for c in configs if any(ng.name == group for ng in c.node_groups)), None)

        return {
            "action": action,
            "clusters": clusters,
            "training_cluster": named(TRAIN_GROUP),
            "inference_cluster": named(INFERENCE_GROUP),
        }

    # --- scale --------------------------------------------------------------------------
    def _scale(self, context: Context, client: EksctlHook, configs: list[ClusterConfig]) -> dict[str, Any]:
        steps: list[dict[str, Any]] = []
        for cfg in configs:
            state = client.get_cluster(cfg.name, cfg.region)
            if state is None:
                raise AirflowFailException(f"cluster {cfg.name!r} does not exist: run action=create first")
            if state.status != "ACTIVE":
                raise AirflowException(f"cluster {cfg.name!r} is {state.status}, not ACTIVE: cannot scale now")
            existing = client.get_nodegroups(cfg.name, cfg.region)
            missing = [ng.name for ng in cfg.node_groups if ng.name not in existing]
            if missing:
                raise AirflowFailException(
                    f"cluster {cfg.name!r} has no node group(s) {missing}: run action=create to add them"
                )
            steps.extend(self._converge_steps(client, cfg, {}, recovering=False))
        if not steps:
            self.log.info("node groups already at the requested sizes")
            return self._finish(context, [], client)
        return self._run_steps(context, steps, {}, "execute_complete", {"created": []}, self.create_timeout)

    # --- delete -------------------------------------------------------------------------
    def _delete(self, context: Context, client: EksctlHook, configs: list[ClusterConfig]) -> dict[str, Any]:
        steps, names, gone = [], [], []
        for cfg in reversed(configs):
            state = client.get_cluster(cfg.name, cfg.region)
            if state is None:
                self.log.info("cluster %s does not exist: nothing to delete", cfg.name)
                gone.append(cfg.name)
                continue
            if self._mode() == EPHEMERAL_CLUSTER and state.tags.get(EPHEMERAL_TAG) != run_hash(context["run_id"]):
                raise AirflowFailException(
                    f"refusing to delete {cfg.name!r}: it lacks tag {EPHEMERAL_TAG}={run_hash(context['run_id'])}, "
                    "so this run did not create it"
                )
            if self._karpenter_clusters(context, [cfg.name]):
                self._karpenter_hook(cfg.region).terminate_nodes(cfg.name)
            steps.append(step(f"delete cluster {cfg.name}", delete_cluster_args(cfg.name, cfg.region)))
            names.append(cfg.name)
        if gone:
            self._delete_karpenter(context, gone, configs[0].region)
        if not steps:
            return {"action": "delete", "deleted": [], "clusters": []}
        return self._run_steps(context, steps, {}, "execute_deleted", {"names": names}, self.delete_timeout)

    def execute_deleted(
        self, context: Context, event: dict[str, Any], names: list[str] | None = None
    ) -> dict[str, Any]:
        names = _resumed(event, "names", names, [])
        if event.get("status") != "success":
            tail = "\n".join(event.get("tail") or [])
            raise AirflowException(f"deleting {', '.join(names)} failed: {event.get('message', event)}\n{tail}")
        self._delete_karpenter(context, names, self._configs(context)[0].region)
        return {"action": "delete", "deleted": names, "clusters": []}

    # --- running steps ------------------------------------------------------------------
    def _run_steps(
        self,
        context: Context,
        steps: list[dict[str, Any]],
        files: dict[str, str],
        method: str,
        kwargs: dict[str, Any],
        timeout: timedelta,
    ) -> Any:
        region = self._configs(context)[0].region
        trigger = EksctlCommandTrigger(
            passthrough=kwargs,
            steps=steps,
            region=region,
            aws_conn_id=self.resolved_aws_conn_id(),
            files=files,
            eksctl_path=self.eksctl_path,
            step_timeout=timeout.total_seconds(),
        )
        if self.deferrable and any(s["long"] for s in steps):
            self.defer(trigger=trigger, method_name=method, kwargs=kwargs, timeout=timeout)
        self._running = trigger
        try:
            event = asyncio.run(first_event(trigger))
        finally:
            self._running = None
        return getattr(self, method)(context, event, **kwargs)

    def on_kill(self) -> None:
        trigger = self._running
        if trigger is not None and trigger.current_pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(trigger.current_pid, signal.SIGTERM)
