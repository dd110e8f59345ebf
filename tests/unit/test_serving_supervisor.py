"""The local server's supervisor, run as a real process around small stand-in children.

The children here are short Python scripts, not the model server: this proves restarting,
backoff, giving up on a permanent failure, log rotation and stopping; that the real server is
brought back and answers correctly after ``kill -9`` is tests/integration/test_local_deploy.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eksml.serving.local import SUPERVISOR

#: Exits with status 1 on its first two runs (after printing 60 KB), then stays up.
CHILD = """
import pathlib, sys, time
runs = pathlib.Path(sys.argv[1])
n = int(runs.read_text()) + 1 if runs.exists() else 1
runs.write_text(str(n))
if n <= 2:
    for i in range(600):
        print(f"run {n} line {i:04d} " + "x" * 80, flush=True)
    sys.exit(1)
print("steady", flush=True)
time.sleep(120)
"""


def _supervise(tmp_path: Path, child: list[str], *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            str(SUPERVISOR),
            "--state",
            str(tmp_path / "state.json"),
            "--log",
            str(tmp_path / "server.log"),
            *extra,
            "--",
            *child,
        ],
        start_new_session=True,
    )


def _state(tmp_path: Path) -> dict:
    try:
        return json.loads((tmp_path / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def _until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


def test_a_dying_child_is_restarted_with_backoff_and_its_log_rotates(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = _supervise(
        tmp_path,
        [sys.executable, str(script), str(tmp_path / "runs")],
        "--initial-backoff",
        "0.2",
        "--max-log-bytes",
        "40000",
        "--backups",
        "2",
    )
    try:
        _until(lambda: _state(tmp_path).get("restarts") == 2 and _state(tmp_path).get("server_pid"))
        _until(lambda: "steady" in (tmp_path / "server.log").read_text())
        state = _state(tmp_path)
        assert [e["status"] for e in state["exits"]] == [1, 1]
        assert state["backoff_s"] == 0.4  # 0.2 s before the first restart, doubled before the second
        assert state["supervisor_pid"] == proc.pid
        logs = sorted(p.name for p in tmp_path.glob("server.log*"))
        assert logs == ["server.log", "server.log.1", "server.log.2"]  # 120 KB written, 2 backups kept
        assert all((tmp_path / name).stat().st_size <= 40000 for name in logs)
        assert "restart 2 in 0.4 s" in "".join((tmp_path / name).read_text() for name in logs)
        child = state["server_pid"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
        assert _state(tmp_path)["server_pid"] is None and _state(tmp_path)["restarts"] == 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_child_killed_by_a_signal_is_restarted(tmp_path):
    proc = _supervise(tmp_path, [sys.executable, "-c", "import time; time.sleep(120)"], "--initial-backoff", "0.1")
    try:
        _until(lambda: _state(tmp_path).get("server_pid"))
        first = _state(tmp_path)["server_pid"]
        subprocess.run(["kill", "-9", str(first)], check=True)
        _until(
            lambda: _state(tmp_path).get("restarts") == 1 and _state(tmp_path).get("server_pid") not in (None, first)
        )
        assert _state(tmp_path)["exits"][-1]["status"] == -signal.SIGKILL
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def test_a_model_that_cannot_load_is_not_restarted(tmp_path):
    # Its last words are what the operator needs: ~60 KB of output just before the exit, still in the
    # pipe when the child is gone, must all reach the log before the supervisor gives up.
    script = "import sys\nfor i in range(3000): print(f'line {i:05d}')\nprint('no model'); sys.exit(2)"
    proc = _supervise(tmp_path, [sys.executable, "-c", script])
    assert proc.wait(timeout=60) == 2
    state = _state(tmp_path)
    assert state["restarts"] == 0 and state["gave_up"]["status"] == 2
    lines = (tmp_path / "server.log").read_text().splitlines()
    assert [line for line in lines if line.startswith("line ")] == [f"line {i:05d}" for i in range(3000)]
    assert lines[-2:][0] == "no model" and "not restarted" in lines[-1]


def test_no_command_is_refused(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SUPERVISOR), "--state", str(tmp_path / "s"), "--log", str(tmp_path / "l")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "no command" in proc.stderr


@pytest.mark.parametrize("bad", [["--max-log-bytes", "10"], ["--backups", "-1"], ["--initial-backoff", "0"]])
def test_bad_limits_are_refused(tmp_path, bad):
    proc = subprocess.run(
        [
            sys.executable,
            str(SUPERVISOR),
            "--state",
            str(tmp_path / "s"),
            "--log",
            str(tmp_path / "l"),
            *bad,
            "--",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2


def test_the_childs_last_output_reaches_the_log_before_the_supervisor_gives_up(tmp_path):
    """In process, with a log on a slow disk: the child exits at once, its output still in the pipe."""
    from eksml.serving.supervisor import RotatingLog, Supervisor

    class SlowDisk(RotatingLog):
        def write(self, data: bytes) -> None:
            time.sleep(0.005)
            super().write(data)

    script = "import sys\nfor i in range(200): print(f'line {i:03d}')\nprint('no model'); sys.exit(2)"
    supervisor = Supervisor(
        [sys.executable, "-c", script], tmp_path / "state.json", SlowDisk(tmp_path / "server.log", 1 << 20, 1)
    )
    assert supervisor.run() == 2
    lines = (tmp_path / "server.log").read_text().splitlines()
    assert lines[:-1] == [f"line {i:03d}" for i in range(200)] + ["no model"]
    assert "not restarted" in lines[-1]
