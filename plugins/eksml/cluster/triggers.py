"""Run long eksctl commands (create/delete: 10-25 minutes) in the triggerer.

Why a trigger runs eksctl itself: eksctl is the orchestrator of a cluster create (it
chains several CloudFormation stacks, then the OIDC provider, node groups and IRSA roles)
and must stay alive until it finishes. Started from a worker and then detached, it would
die with the worker's pod or be orphaned on restart; run in the worker, it would hold a
slot for half an hour. The triggerer is the long-lived asyncio service Airflow has for
exactly this kind of wait, and an asyncio subprocess costs it nothing while eksctl runs.

Failure modes are explicit: a step guarded with ``unless_cluster_exists`` reports
``exists`` instead of running when the cluster is already there (a triggerer restart
re-runs the trigger; the operator then waits with the provider's EKS trigger and
converges instead of failing on "stack already exists").
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from eksml.cluster.hooks import MIN_VERSION, EksctlError, EksctlHook

FILE_TOKEN = "{file:"


def step(
    label: str, args: list[str], *, long: bool = True, unless_cluster_exists: tuple[str, str] | None = None
) -> dict[str, Any]:
    """A serialisable eksctl step; ``{file:NAME}`` in ``args`` becomes the path of ``files[NAME]``.

    ``long`` marks commands that take minutes (worth deferring); ``unless_cluster_exists``
    turns the step into a no-op reported as ``exists`` when that cluster is already there.
    """
    guard = {"name": unless_cluster_exists[0], "region": unless_cluster_exists[1]} if unless_cluster_exists else None
    return {"label": label, "args": list(args), "long": long, "unless_cluster_exists": guard}


def file_arg(name: str) -> str:
    return f"{FILE_TOKEN}{name}}}"


def _resolve(args: list[str], workdir: Path) -> list[str]:
    return [str(workdir / a[len(FILE_TOKEN) : -1]) if a.startswith(FILE_TOKEN) and a.endswith("}") else a for a in args]


class EksctlCommandTrigger(BaseTrigger):
    """Run eksctl steps in order; fire one event: success, exists, failed or error."""

    def __init__(
        self,
        steps: list[dict[str, Any]],
        region: str,
        aws_conn_id: str | None,
        files: dict[str, str] | None = None,
        eksctl_path: str | None = None,
        step_timeout: float = 3600,
        min_version: list[int] | tuple[int, ...] = MIN_VERSION,
        passthrough: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.steps = steps
        self.region = region
        self.aws_conn_id = aws_conn_id
        self.files = files or {}
        self.eksctl_path = eksctl_path
        self.step_timeout = step_timeout
        self.min_version = tuple(min_version)
        #: Returned in every event: the operator's resume state travels with the event too
        #: (``dag.test`` resumes with the event alone, without the deferral kwargs).
        self.passthrough = passthrough or {}
        #: pid of the running eksctl (its own process group), for the non-deferred on_kill path.
        self.current_pid: int | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "steps": self.steps,
                "region": self.region,
                "aws_conn_id": self.aws_conn_id,
                "files": self.files,
                "eksctl_path": self.eksctl_path,
                "step_timeout": self.step_timeout,
                "min_version": list(self.min_version),
                "passthrough": self.passthrough,
            },
        )

    def _started(self, pid: int) -> None:
        self.current_pid = pid

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async for payload in self._run():
            yield TriggerEvent({**payload, "passthrough": self.passthrough})

    async def _run(self) -> AsyncIterator[dict[str, Any]]:
        hook = EksctlHook(self.region, self.aws_conn_id, self.eksctl_path, log_line=self.log.info)
        try:
            self.log.info("using %s", hook.binary)  # a missing binary fails before any connection lookup
            await hook.acheck_version(self.min_version)
            with tempfile.TemporaryDirectory(prefix="eksml-eksctl-") as tmp:
                workdir = Path(tmp)
                for name, content in self.files.items():
                    path = workdir / name
                    path.write_text(content)
                    os.chmod(path, 0o600)
                for index, spec in enumerate(self.steps):
                    guard = spec.get("unless_cluster_exists")
                    if guard:
                        state = await hook.aget_cluster(guard["name"], guard["region"])
                        if state is not None:
                            self.log.info(
                                "cluster %s already exists (%s): not running %s",
                                state.name,
                                state.status,
                                spec["label"],
                            )
                            yield {
                                "status": "exists",
                                "step": index,
                                "cluster": state.name,
                                "cluster_status": state.status,
                            }
                            return
                    args = _resolve(spec["args"], workdir)
                    self.log.info(
                        "step %d/%d: %s: $ eksctl %s", index + 1, len(self.steps), spec["label"], " ".join(args)
                    )
                    result = await hook.astreaming(args, timeout=self.step_timeout, on_start=self._started)
                    self.current_pid = None
                    if result.returncode != 0:
                        reason = "timed out" if result.timed_out else f"exit {result.returncode}"
                        message = f"{spec['label']} failed ({reason})"
                        yield {"status": "failed", "step": index, "message": message, "tail": result.tail}
                        return
            yield {"status": "success", "steps": len(self.steps)}
        except Exception as exc:  # any error must reach the task as an event, redacted
            self.log.exception("eksctl trigger failed")
            yield {"status": "error", "message": hook.redact(f"{type(exc).__name__}: {exc}")}


async def first_event(trigger: BaseTrigger) -> dict[str, Any]:
    """Run a trigger in-process until its first event (the non-deferrable path)."""
    async for event in trigger.run():
        return event.payload
    raise EksctlError(f"{type(trigger).__name__} finished without an event")
