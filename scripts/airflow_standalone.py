#!/usr/bin/env python3
"""Start and stop a real ``airflow standalone`` (api-server, scheduler, dag-processor,
triggerer) on loopback with a throwaway ``AIRFLOW_HOME``, for the end-to-end and browser
tests and for trying the UI by hand.

Why a script and not ``airflow standalone`` alone: on a shared machine the defaults collide
(port 8080, log servers on 8793/8794, 32 idle executor workers) and the component processes
outlive a plain SIGTERM. This starts every port on a free one, loads the project's pools,
variables and connections (``python -m eksml.airflow_objects``) before the scheduler
starts, and stops the whole process group with SIGINT, as Ctrl-C in a terminal does.

The admin password is chosen here (random, kept in ``$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated``
across restarts of the same home) so that the connection ``eksml_airflow_api`` can carry it:
the training DAG's ``outcome`` task writes each run's note through the REST API with it.

Usage: python scripts/airflow_standalone.py [--home DIR] [--port N]
       python scripts/airflow_standalone.py --home DIR --cli <airflow CLI arguments>
Ctrl-C or SIGTERM (``kill <pid>``) stops the whole process group. ``--cli`` runs the Airflow
CLI against that home's database and DAGs (e.g. ``--cli backfill create ...``), with or
without the server running.
(EKSML_* variables of the calling shell pass through; nothing else of its Airflow settings.)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
#: Third-party modules the DAG files import (never the project's own: they would go stale).
PRELOAD = (
    "airflow.sdk",
    "airflow.sdk.execution_time.task_runner",
    "airflow.providers.standard.operators.python",
    "airflow.providers.standard.operators.trigger_dagrun",
    "airflow.providers.cncf.kubernetes.operators.pod",
    "airflow.providers.cncf.kubernetes.triggers.pod",
    "airflow.providers.amazon.aws.hooks.s3",
    "airflow.providers.amazon.aws.operators.sagemaker",
)


class StandaloneError(RuntimeError):
    """Airflow did not come up (the message carries the tail of its output)."""


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AirflowStandalone:
    """One ``airflow standalone`` process group; use as a context manager or start()/stop()."""

    def __init__(
        self,
        home: Path,
        *,
        env: dict[str, str] | None = None,
        port: int | None = None,
        parallelism: int = 4,
        settings_file: Path | None = None,
    ) -> None:
        self.home = Path(home).resolve()  # sqlite:/// and Airflow refuse relative paths
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.settings_file = settings_file
        self.log_path = self.home / "standalone.log"
        self.password_file = self.home / "simple_auth_manager_passwords.json.generated"
        self._proc: subprocess.Popen | None = None
        self._revived: list[subprocess.Popen] = []
        self._log: IO[bytes] | None = None
        self.env = self._environment(env or {}, parallelism)

    def _environment(self, extra: dict[str, str], parallelism: int) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "EKSML_"))}
        env = {
            **base,
            "AIRFLOW_HOME": str(self.home),
            # SQLite allows one writer at a time: a CLI command (``airflow backfill create``)
            # writing while the scheduler does must wait for the lock, not fail after 5 s.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}?timeout=60",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            # Executor workers come from a forkserver that has already imported the providers
            # the DAG files use, so each task parses its DAG file in a fraction of a second
            # instead of re-importing the kubernetes and AWS clients (seconds per task).
            "AIRFLOW__CORE__MP_START_METHOD": "forkserver",
            "AIRFLOW__CORE__MP_FORKSERVER_PRELOAD": ",".join(PRELOAD),
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "300",
            # A task's calls to the execution API wait 5 s by default: on a loaded machine (the
            # API server is one process beside the training) that failed tasks before they started.
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
            # Deferrable operators wait in the triggerer (their default follows this option).
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
            "PATH": f"{VENV_BIN}{os.pathsep}{base.get('PATH', '')}",
            "PYTHONPATH": str(ROOT / "plugins"),
            "NO_COLOR": "1",
            "PYTHONUNBUFFERED": "1",
            # The outcome task writes run notes through the REST API (eksml.run_notes).
            "AIRFLOW_CONN_EKSML_AIRFLOW_API": json.dumps(
                {
                    "conn_type": "http",
                    "host": self.base_url,
                    "login": "admin",
                    "password": self.admin_password(),
                }
            ),
        }
        env.update(extra)
        return env

    # --- lifecycle ------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the metadata database and load include/airflow_settings.yaml into it."""
        self.home.mkdir(parents=True, exist_ok=True)
        self._run([str(VENV_BIN / "airflow"), "db", "migrate"], "db-migrate.log")
        cmd = [str(VENV_BIN / "python"), "-m", "eksml.airflow_objects"]
        if self.settings_file:
            cmd.append(str(self.settings_file))
        self._run(cmd, "airflow-settings.log")

    def _run(self, cmd: list[str], log_name: str) -> None:
        result = subprocess.run(cmd, env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=300)
        (self.home / log_name).write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise StandaloneError(f"{' '.join(cmd[-3:])} failed:\n{(result.stdout + result.stderr)[-3000:]}")

    def start(self, timeout: float = 240) -> AirflowStandalone:
        """Prepare, spawn in a new process group, and wait until the API reports healthy."""
        self.prepare()
        self._log = open(self.log_path, "ab")
        self._proc = self._spawn("standalone")
        try:
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_healthy(self, timeout: float) -> dict:
        """Poll ``/api/v2/monitor/health`` until metadatabase, scheduler, triggerer and
        dag-processor are all healthy."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise StandaloneError(f"airflow standalone exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/api/v2/monitor/health", timeout=5) as resp:
                    last = json.load(resp)
                if all(
                    (last.get(part) or {}).get("status") == "healthy"
                    for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
                ):
                    return last
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last = exc
            time.sleep(2)
        raise StandaloneError(f"not healthy after {timeout:.0f} s (last: {last}):\n{self.log_tail()}")

    def stop(self, timeout: float = 15) -> int | None:
        """SIGINT to the process group (Ctrl-C), then SIGTERM, then SIGKILL if it lingers."""
        proc, self._proc = self._proc, None
        for revived in self._revived:  # schedulers started again, each in a group of its own
            self._end_group(revived, timeout)
        self._revived = []
        code = self._end_group(proc, timeout) if proc is not None else None
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def _end_group(self, proc: subprocess.Popen, timeout: float) -> int | None:
        code = None
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 15), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                code = proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self._reap_group(proc.pid)
        return code

    def scheduler_alive(self) -> bool:
        """Whether a scheduler of this process group runs (an exited one stays a zombie child)."""
        if self._proc is None:
            return False
        groups = {self._proc.pid, *(p.pid for p in self._revived)}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after its ")".
                state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
                cmdline = (stat.parent / "cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if int(pgrp) in groups and state != "Z" and b"scheduler" in cmdline:
                return True
        return False

    def revive_scheduler(self) -> bool:
        """Start a scheduler in this process group if none runs; True if one was started.

        ``airflow standalone`` does not restart a component that exits, and Airflow 3.3's
        scheduler exits on ``ObjectDeletedError`` when a DAG run it is examining is deleted
        under it, which ``backfill create`` does when SQLite refuses one of its writes
        (``airflow.models.backfill._cleanup_partial_backfill`` deletes the runs it had made)."""
        if self._proc is None or self.scheduler_alive():
            return False
        # A group of its own (another session's group cannot be joined); stop() ends it too.
        self._revived.append(self._spawn("scheduler"))
        return True

    def _spawn(self, command: str) -> subprocess.Popen:
        """``airflow <command>`` in a process group of its own (one signal reaches every component
        it starts), writing to the standalone log."""
        return subprocess.Popen(
            [str(VENV_BIN / "airflow"), command],
            env=self.env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @staticmethod
    def _reap_group(pgid: int) -> None:
        """Components that outlived the leader (task runners) get SIGKILL after a grace period."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.5)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def __enter__(self) -> AirflowStandalone:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- facts ----------------------------------------------------------------------------
    def admin_password(self) -> str:
        """The ``admin`` user's password: the one in the home's password file, else a new random one
        written there (the simple auth manager keeps passwords it finds in that file)."""
        try:
            return json.loads(self.password_file.read_text())["admin"]
        except (OSError, ValueError, KeyError):
            password = secrets.token_urlsafe(12)
            self.home.mkdir(parents=True, exist_ok=True)
            self.password_file.write_text(json.dumps({"admin": password}))
            self.password_file.chmod(0o600)
            return password

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, help="AIRFLOW_HOME (default: a new temporary folder)")
    parser.add_argument("--port", type=int, help="API/UI port (default: a free one)")
    parser.add_argument(
        "--cli", nargs=argparse.REMAINDER, help="run the Airflow CLI with these arguments against --home, and exit"
    )
    args = parser.parse_args(argv)
    if args.cli is not None and not args.home:
        parser.error("--cli needs --home: the home of the server whose database the command should use")
    home = args.home or Path(tempfile.mkdtemp(prefix="eksml-standalone-"))
    # The project's own settings pass through (EKSML_STORE_URI, EKSML_PROFILE, ...).
    settings = {k: v for k, v in os.environ.items() if k.startswith("EKSML_")}
    server = AirflowStandalone(home, env=settings, port=args.port)
    if args.cli is not None:
        return subprocess.run([str(VENV_BIN / "airflow"), *args.cli], env=server.env).returncode
    # SIGTERM (kill, a service manager) stops the whole group as Ctrl-C does: without this the
    # default action would end this process alone and orphan scheduler, triggerer and workers.
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"starting airflow standalone in {home} (log: {server.log_path}); this takes 30-60 s", flush=True)
    try:
        with server:
            print(
                f"ready.\n  URL      {server.base_url}\n  user     admin\n  password {server.admin_password()}"
                f"\n  (also in {server.password_file})\n  stop     Ctrl-C, or kill {os.getpid()}",
                flush=True,
            )
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print("stopped", flush=True)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    sys.exit(main())
