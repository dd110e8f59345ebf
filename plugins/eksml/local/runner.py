"""Run a :class:`~eksml.specs.WorkloadSpec` as a local process, the way its pod would run it.

Same entrypoint, same arguments, same environment variables; the image's virtualenv
(``.venvs/<image>``, built from ``images/<image>/requirements.txt``) stands in for the image.
Distributed specs run under ``horovodrun -np N`` over Gloo on localhost.

Every workload runs under :mod:`eksml.local.guard`, so it dies with the task process (also
when that is killed with SIGKILL), and a retried task first ends whatever an earlier attempt
of the same workload left running: two trainers never write the same files.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from airflow.sdk.exceptions import AirflowFailException

from eksml.errors import ServiceError
from eksml.exits import EXIT_BAD_INPUT
from eksml.settings import Settings
from eksml.specs import WorkloadSpec
from eksml.storage import workload_env

GUARD = Path(__file__).with_name("guard.py")


def _end_orphans_of_a_killed_guard(guard: subprocess.Popen, workload: str) -> None:
    from eksml.local.guard import end_all

    if guard.wait() < 0:
        end_all(workload)


def workload_id(spec: WorkloadSpec) -> str:
    """Stable across retries of one workload (same name and arguments), distinct between workloads."""
    return hashlib.sha256("\0".join((spec.name, spec.image, *spec.argv())).encode()).hexdigest()[:16]


def end_leftovers(spec: WorkloadSpec) -> list[int]:
    """End processes of an earlier attempt of ``spec`` still running; return their pids."""
    from eksml.local.guard import end_all

    return end_all(workload_id(spec))


#: Variables a workload may inherit from the worker; anything else (credentials included) is
#: passed explicitly through ``extra_env`` so a pod and a local process see the same set.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


#: Lines TensorFlow/XLA print on a machine without a GPU driver: not errors of the workload
#: (``E0000 ... cuInit ... UNKNOWN ERROR (303)`` means "no CUDA device"), so they go to DEBUG.
NOISE = re.compile(
    r"All log messages before absl::InitializeLog|cudart_stub\.cc|cuda_platform\.cc:\d+\] failed call to cuInit"
    r"|cuda_(dnn|fft|blas)\.cc|computation_placer\.cc|oneDNN custom operations are on"
    r"|TF-TRT Warning|This TensorFlow binary is optimized to use available CPU instructions"
    r"|rebuild TensorFlow with the appropriate compiler flags"
)
#: The workload's own ``2026-11-29 18:59:47,785 INFO `` prefix: the task log has its own
#: timestamp and level (other levels keep their name).
OWN_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d[,.]\d+ (INFO )?")


#: ``horovodrun``'s prefix of every line a rank prints (``[0]<stdout>:``; horovod's
#: ``safe_shell_exec.prefix_connection``). Rank 0's lines lose it, so its per-epoch progress
#: reads like a single process's; other ranks' keep ``[rank N]``.
RANK_PREFIX = re.compile(r"^\[(?P<rank>\d+)\]<std(?:out|err)>:")


def log_line(log: logging.Logger, line: str) -> None:
    """One workload output line into the task log: noise at DEBUG, one timestamp per line."""
    rank = RANK_PREFIX.match(line)
    if rank:
        line = line[rank.end() :]
    if NOISE.search(line):
        log.debug("%s", line)
        return
    line = OWN_TIMESTAMP.sub("", line, count=1)
    log.info("%s", f"[rank {rank['rank']}] {line}" if rank and rank["rank"] != "0" else line)


class LocalRunError(ServiceError):
    """The workload process failed; the message ends with its last log lines."""

    def __init__(self, message: str, returncode: int | None = None) -> None:
        super().__init__(message)
        self.returncode = returncode


class LocalRunBadInput(LocalRunError, AirflowFailException):
    """The workload refused its input (exit status 2): a retry cannot succeed, so Airflow does not retry."""


class LocalRunner:
    """Launch workload specs as processes of the project's image virtualenvs."""

    def __init__(self, settings: Settings, log: logging.Logger | None = None) -> None:
        self.settings = settings
        self.log = log or logging.getLogger(__name__)

    def venv(self, image: str) -> Path:
        return Path(self.settings.venvs_dir) / image

    def command(self, spec: WorkloadSpec) -> list[str]:
        """The argv that runs ``spec`` here (no shell is ever involved)."""
        venv = self.venv(spec.image)
        script = Path(self.settings.images_dir) / spec.image / spec.script
        python = str(venv / "bin" / "python")
        if not spec.distributed:
            return [python, str(script), *spec.argv()]
        n = spec.total_processes
        return [
            str(venv / "bin" / "horovodrun"),
            "-np",
            str(n),
            "-H",
            f"localhost:{n}",
            "--gloo",
            python,
            str(script),
            *spec.argv(),
        ]

    def environment(self, spec: WorkloadSpec, extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: os.environ[k] for k in _INHERITED if k in os.environ}
        env.update(spec.env)
        env["PYTHONPATH"] = str(Path(self.settings.images_dir) / "common")
        # A pod reaches S3 through its IRSA service account; a local process gets the
        # credentials and endpoint of the Airflow AWS connection instead.
        env.update(workload_env(self.settings))
        env.update(extra_env or {})
        return env

    def check_ready(self, spec: WorkloadSpec) -> None:
        """Fail with the fix when the image's virtualenv is missing."""
        python = self.venv(spec.image) / "bin" / "python"
        if not python.exists():
            raise LocalRunError(
                f"virtualenv for image {spec.image!r} not found at {python.parent.parent}; "
                f"build it with: bash images/build-local-venv.sh {spec.image}"
            )

    def run(
        self,
        spec: WorkloadSpec,
        extra_env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        tail_lines: int = 30,
        attempt_of: WorkloadSpec | None = None,
    ) -> list[str]:
        """Run to completion, streaming output to the log; return the output lines.

        ``attempt_of``: the workload whose earlier attempts this one replaces (default ``spec``);
        a run under another contract, whose ``spec`` carries no run-specific arguments, passes
        the spec it stands for, so that it neither spares its own leftovers nor ends another
        run's process.
        """
        self.check_ready(spec)
        identity = attempt_of or spec
        leftovers = end_leftovers(identity)
        if leftovers:
            self.log.warning(
                "ended %d process(es) an earlier attempt of %s left running: %s", len(leftovers), spec.name, leftovers
            )
        argv = self.command(spec)
        self.log.info("local run of %s: %s", spec.name, " ".join(argv))
        argv = [sys.executable, "-I", str(GUARD), str(os.getpid()), workload_id(identity), "--", *argv]
        lines: list[str] = []
        tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        with subprocess.Popen(
            argv,
            env=self.environment(spec, extra_env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            cwd=Path(self.settings.images_dir) / spec.image,
            start_new_session=True,
        ) as proc:
            self._proc = proc
            # The guard killed (not the task): its workload got the parent-death signal, but
            # descendants in sessions of their own did not and would hold the output pipe open.
            threading.Thread(
                target=_end_orphans_of_a_killed_guard, args=(proc, workload_id(identity)), daemon=True
            ).start()
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    line = line.rstrip("\n")
                    log_line(self.log, line)
                    lines.append(line)
                    tail.append(line)
                rc = proc.wait(timeout=timeout)
            except BaseException:
                self.kill()
                raise
        if rc != 0:
            error = LocalRunBadInput if rc == EXIT_BAD_INPUT else LocalRunError
            raise error(f"{spec.name} exited with code {rc}; last lines:\n" + "\n".join(tail), rc)
        return lines

    def kill(self) -> None:
        """Stop the running process group (``on_kill`` of the operators)."""
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
