"""Parent of every local workload process: the workload never outlives the task that started it.

``python -I guard.py <task pid> <workload id> -- <argv...>``. Runs the workload in the guard's
own session and, when the task process dies (even by SIGKILL: the kernel's parent-death
signal, ``prctl(PR_SET_PDEATHSIG)``, with a poll of the parent pid as a backstop) or when
it is asked to stop, ends every process carrying the workload's id in its environment:
the workload and its children, including those that started sessions of their own
(``horovodrun`` does). The workload gets the parent-death signal too, so killing the guard
itself ends it (the runner then ends its descendants, see ``runner.py``). Standard library
only: it starts before any virtualenv is chosen.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
MARKER = "EKSML_WORKLOAD_ID"
GRACE_S = 5.0


def processes_of(workload_id: str) -> list[int]:
    """Pids (not ours) whose environment carries ``MARKER=workload_id``."""
    needle = f"{MARKER}={workload_id}\0".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if needle in handle.read() + b"\0":
                    found.append(int(entry))
        except OSError:  # gone, or another user's
            continue
    return found


def end_all(workload_id: str, grace_s: float = GRACE_S, *, reap: bool = False) -> list[int]:
    """SIGTERM every process of the workload, SIGKILL what is left after ``grace_s``.

    ``reap``: also collect exited children (the guard is the subreaper of the workload).
    """
    victims = processes_of(workload_id)
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        for pid in processes_of(workload_id):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if reap:
                _reap()
            if not processes_of(workload_id):
                return victims
            time.sleep(0.1)
    return victims


def _reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def main(argv: list[str]) -> int:
    parent, workload_id, argv = int(argv[0]), argv[1], argv[3:]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphaned descendants are re-parented here, not to init
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append("stop"))
    signal.signal(signal.SIGINT, lambda *_: stop.append("stop"))
    if os.getppid() != parent:  # the task died before the death signal was armed
        return 137
    os.environ[MARKER] = workload_id
    guard = os.getpid()

    def die_with_the_guard() -> None:  # in the child, before exec
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != guard:  # the guard died before the signal was armed
            os._exit(143)

    proc = subprocess.Popen(argv, preexec_fn=die_with_the_guard)
    while True:
        try:
            rc = proc.wait(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            if stop or os.getppid() != parent:
                end_all(workload_id, reap=True)
                proc.wait()
                return 143
    end_all(workload_id, grace_s=1.0, reap=True)  # stragglers the workload left behind
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
