"""Copy an MPIJob's launcher log into the Airflow task log.

All ranks' output reaches the launcher (``horovodrun`` relays it), so its log is the training
log. Every launcher attempt (``runPolicy.backoffLimit`` retries) is its own pod; each is
copied, oldest first, and the tail of the newest is what a failure message quotes.
"""

from __future__ import annotations

import collections
from typing import Any, NamedTuple

from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
from airflow.providers.cncf.kubernetes.kubernetes_helper_functions import generic_api_retry
from kubernetes.client.exceptions import ApiException

from eksml.kubernetes.mpijob import JOB_NAME_LABEL, JOB_ROLE_LABEL, LAUNCHER_CONTAINER


@generic_api_retry
def launcher_pods(hook: KubernetesHook, name: str, namespace: str) -> list[Any]:
    """The launcher pods of MPIJob ``name``, oldest first."""
    selector = f"{JOB_NAME_LABEL}={name},{JOB_ROLE_LABEL}=launcher"
    pods = hook.core_v1_client.list_namespaced_pod(namespace=namespace, label_selector=selector).items

    def created(pod: Any) -> tuple:
        stamp = pod.metadata.creation_timestamp
        return (stamp is None, stamp, pod.metadata.name)

    return sorted(pods, key=created)


@generic_api_retry
def _read_log(hook: KubernetesHook, pod_name: str, namespace: str) -> str:
    response = hook.core_v1_client.read_namespaced_pod_log(
        name=pod_name, namespace=namespace, container=LAUNCHER_CONTAINER, _preload_content=False
    )
    return response.data.decode("utf-8", errors="replace")


class LauncherLog(NamedTuple):
    """The newest launcher pod's last lines and its container's exit status (None while unknown)."""

    tail: list[str]
    exit_code: int | None


def copy_launcher_logs(hook: KubernetesHook, name: str, namespace: str, log: Any, tail_lines: int = 50) -> LauncherLog:
    """Log every launcher pod's output to ``log`` (a task logger); return the newest pod's last
    lines and exit status (the training's result: ``horovodrun`` runs in that container)."""
    from eksml.kubernetes.workload_pod import container_exit_code

    pods = launcher_pods(hook, name, namespace)
    if not pods:
        log.warning("MPIJob %s/%s has no launcher pod (never started, or already garbage-collected)", namespace, name)
        return LauncherLog([], None)
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    for attempt, pod in enumerate(pods, start=1):
        pod_name = pod.metadata.name
        phase = getattr(pod.status, "phase", None) or "Unknown"
        log.info("----- launcher pod %s (attempt %d of %d, %s) -----", pod_name, attempt, len(pods), phase)
        try:
            text = _read_log(hook, pod_name, namespace)
        except ApiException as exc:
            log.warning("could not read the log of %s: %s %s", pod_name, exc.status, exc.reason)
            continue
        tail.clear()
        for line in text.splitlines():
            log.info("%s", line)
            tail.append(line)
    return LauncherLog(list(tail), container_exit_code(pods[-1], LAUNCHER_CONTAINER))
