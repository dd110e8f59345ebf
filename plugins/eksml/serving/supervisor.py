"""Keep the local model server running: restart it with backoff, record restarts, rotate its log.

    python supervisor.py --state S.json --log server.log [--max-log-bytes N] [--backups K] -- ARGV...

What Kubernetes does for the pod (restart policy with CrashLoopBackOff, container log rotation),
done for the local profile's server process. The supervisor runs ``ARGV`` as its child in its
own process group (signal the group to stop both), copies the child's stdout and stderr into
``--log``, rotated at ``--max-log-bytes`` with ``--backups`` old files kept, and restarts the
child whenever it exits, after 1, 2, 4 ... up to 30 s (back to 1 s once a run lasted a minute).
Exit status 2 (the model version cannot be loaded) is permanent: the supervisor records it and
exits with 2, as restarting cannot help. SIGTERM or SIGINT stop the child (SIGTERM, then SIGKILL
after 30 s) and the supervisor. ``--state`` holds the supervisor's and the child's pids, the
number of restarts and the last exits, replaced atomically (``python -m eksml.serving status``
shows it).

Standard library only, and started by file path: it must run without Airflow's environment.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

#: The server's exit status for a model version that cannot be loaded (never worth a restart).
PERMANENT_FAILURE = 2
MAX_BACKOFF_S = 30.0
#: A run at least this long resets the backoff to its first step.
STABLE_RUN_S = 60.0
STOP_TIMEOUT_S = 30.0
#: How long an exited child's remaining output may take to reach the log.
DRAIN_TIMEOUT_S = 10.0
#: Exits kept in the state file.
HISTORY = 10


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RotatingLog:
    """Append-only log file rotated by size: ``log``, ``log.1`` ... ``log.<backups>``."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file: IO[bytes] = open(self.path, "ab")

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._file.tell() + len(data) > self.max_bytes and self._file.tell() > 0:
                self._rotate()
            self._file.write(data)
            self._file.flush()

    def _rotate(self) -> None:
        self._file.close()
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.backups > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._file = open(self.path, "ab")

    def note(self, message: str) -> None:
        self.write(f"{_now()} supervisor: {message}\n".encode())


class Supervisor:
    def __init__(self, argv: Sequence[str], state: Path, log: RotatingLog, initial_backoff: float = 1.0) -> None:
        self.argv, self.state_path, self.log = list(argv), state, log
        self.initial_backoff = initial_backoff
        self.state: dict[str, Any] = {
            "supervisor_pid": os.getpid(),
            "server_pid": None,
            "argv": self.argv,
            "started_at": _now(),
            "restarts": 0,
            "backoff_s": 0.0,
            "exits": [],
        }
        self.child: subprocess.Popen | None = None
        self.copier: threading.Thread | None = None
        self.stopping = threading.Event()

    def _save(self) -> None:
        tmp = self.state_path.with_name(f".{self.state_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.state, indent=2))
        os.replace(tmp, self.state_path)

    def _copy(self, stream: IO[bytes]) -> None:
        for line in iter(stream.readline, b""):
            self.log.write(line)
        stream.close()

    def _start(self) -> subprocess.Popen:
        child = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.copier = threading.Thread(target=self._copy, args=(child.stdout,), daemon=True)
        self.copier.start()
        self.state["server_pid"] = child.pid
        self._save()
        return child

    def stop(self, signum: int, _frame: object = None) -> None:
        self.stopping.set()
        child = self.child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    def run(self) -> int:
        backoff = self.initial_backoff
        while not self.stopping.is_set():
            started = time.monotonic()
            self.child = self._start()
            if self.stopping.is_set():  # stopped while it was being started: signal the new child too
                self.child.send_signal(signal.SIGTERM)
            code = self.child.wait()
            self._drain()
            ran = time.monotonic() - started
            if self.stopping.is_set():
                break
            exit_record = {"at": _now(), "status": code, "ran_s": round(ran, 1)}
            self.state["exits"] = [*self.state["exits"], exit_record][-HISTORY:]
            self.state["server_pid"] = None
            if code == PERMANENT_FAILURE:
                self.state["gave_up"] = exit_record
                self._save()
                self.log.note(f"server exited with {code} (model cannot be loaded): not restarted")
                return PERMANENT_FAILURE
            if ran >= STABLE_RUN_S:
                backoff = self.initial_backoff
            how = f"signal {-code}" if code < 0 else f"status {code}"
            self.log.note(
                f"server (pid {self.child.pid}) exited with {how} after {ran:.1f} s; "
                f"restart {self.state['restarts'] + 1} in {backoff:g} s"
            )
            self.state["backoff_s"] = backoff
            self._save()
            if self.stopping.wait(backoff):
                break
            self.state["restarts"] += 1
            self.state["last_restart_at"] = _now()
            backoff = min(backoff * 2, MAX_BACKOFF_S)
        return self._shutdown()

    def _drain(self) -> None:
        """Let the copier write what the exited child left in the pipe: its last lines say why it
        exited. Bounded, as a grandchild may still hold the pipe open."""
        if self.copier is not None:
            self.copier.join(timeout=DRAIN_TIMEOUT_S)

    def _shutdown(self) -> int:
        child = self.child
        if child is not None and child.poll() is None:
            try:
                child.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.state["server_pid"] = None
        self.state["stopped_at"] = _now()
        self._save()
        self.log.note("stopped")
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a command, restart it with backoff, rotate its log.")
    parser.add_argument("--state", type=Path, required=True, help="JSON file with pids and restarts")
    parser.add_argument("--log", type=Path, required=True, help="the child's stdout and stderr")
    parser.add_argument("--max-log-bytes", type=int, default=20 * 1024 * 1024)
    parser.add_argument("--backups", type=int, default=3)
    parser.add_argument("--initial-backoff", type=float, default=1.0, help="seconds before the first restart")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- ARGV of the server")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to supervise (append -- ARGV)")
    if args.max_log_bytes < 1024 or args.backups < 0 or args.initial_backoff <= 0:
        parser.error("--max-log-bytes must be >= 1024, --backups >= 0 and --initial-backoff > 0")
    supervisor = Supervisor(
        command, args.state, RotatingLog(args.log, args.max_log_bytes, args.backups), args.initial_backoff
    )
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
