"""scripts/airflow_standalone.py: an isolated environment, and a stop that leaves no process behind."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from project_files import load_script

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def standalone():
    return load_script("airflow_standalone", ROOT / "scripts" / "airflow_standalone.py")


def test_environment_is_isolated_and_on_loopback(standalone, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", "/somewhere/else")
    monkeypatch.setenv("EKSML_PROFILE", "aws")
    server = standalone.AirflowStandalone(tmp_path / "home", env={"EKSML_STORE_URI": "file:///tmp/s"})
    env = server.env
    assert env["AIRFLOW_HOME"] == str(tmp_path / "home")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(ROOT / "dags")
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1" and env["AIRFLOW__API__PORT"] == str(server.port)
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"http://127.0.0.1:{server.port}/execution/"
    assert "EKSML_PROFILE" not in env and env["EKSML_STORE_URI"] == "file:///tmp/s"
    ports = {
        server.port,
        int(env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"]),
        int(env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"]),
    }
    assert len(ports) == 3 and 8793 not in ports
    for module in env["AIRFLOW__CORE__MP_FORKSERVER_PRELOAD"].split(","):
        assert not module.startswith("eksml"), "the project's own modules would go stale in the forkserver"
        assert importlib.util.find_spec(module) is not None, module


def test_stop_escalates_and_reaps_the_whole_group(standalone, tmp_path):
    """A leader that ignores SIGINT, with a child: both are gone after stop()."""
    server = standalone.AirflowStandalone(tmp_path / "home")
    pid_file = tmp_path / "child.pid"
    server._proc = subprocess.Popen(
        ["bash", "-c", f"trap '' INT; sleep 300 & echo $! > {pid_file}; wait"], start_new_session=True
    )
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child = int(pid_file.read_text())
    code = server.stop(timeout=0.5)
    assert code == -signal.SIGTERM  # escalated: the leader ignored SIGINT
    assert not alive(child)


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


#: Runs the helper's main() with start() replaced by a stand-in process group (a leader with a
#: child, as airflow standalone has): what is tested is main()'s handling of SIGTERM, not Airflow.
MAIN_WITH_STAND_IN = r"""
import importlib.util, subprocess, sys, pathlib
spec = importlib.util.spec_from_file_location("airflow_standalone", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
pid_file = pathlib.Path(sys.argv[3])

def start(self, timeout=0):
    (pathlib.Path(sys.argv[2]) / "simple_auth_manager_passwords.json.generated").write_text('{"admin": "pw"}')
    self._proc = subprocess.Popen(["bash", "-c", f"sleep 300 & echo $! > {pid_file}; wait"], start_new_session=True)
    return self

module.AirflowStandalone.start = start
pathlib.Path(sys.argv[2]).mkdir(parents=True, exist_ok=True)
sys.exit(module.main(["--home", sys.argv[2], "--port", "1"]))
"""


def test_sigterm_stops_the_whole_process_group(tmp_path):
    """`kill <pid>` of the helper must not orphan the Airflow components it started."""
    pid_file = tmp_path / "child.pid"
    helper = subprocess.Popen(
        [
            sys.executable,
            "-c",
            MAIN_WITH_STAND_IN,
            str(ROOT / "scripts" / "airflow_standalone.py"),
            str(tmp_path / "home"),
            str(pid_file),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline and helper.poll() is None, "the stand-in never started"
        time.sleep(0.05)
    child = int(pid_file.read_text())
    ready = helper.stdout.readline()
    while "ready" not in ready:
        ready = helper.stdout.readline()
    helper.send_signal(signal.SIGTERM)
    assert helper.wait(timeout=60) == 0
    out = helper.stdout.read()
    assert "stopped" in out
    deadline = time.monotonic() + 15
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert not alive(child), "a component outlived the helper"
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)


def test_password_is_chosen_before_start_and_kept(standalone, tmp_path):
    first = standalone.AirflowStandalone(tmp_path / "home")
    password = first.admin_password()
    assert len(password) >= 12 and password != "admin"
    conn = json.loads(first.env["AIRFLOW_CONN_EKSML_AIRFLOW_API"])
    assert conn == {"conn_type": "http", "host": first.base_url, "login": "admin", "password": password}
    assert standalone.AirflowStandalone(tmp_path / "home").admin_password() == password


def test_a_relative_home_works_as_the_readme_writes_it(standalone, tmp_path, monkeypatch):
    """`--home .local/airflow-ui`: Airflow refused the relative sqlite path at start-up
    ("Cannot use relative path: sqlite:///.local/airflow-ui/airflow.db")."""
    monkeypatch.chdir(tmp_path)
    server = standalone.AirflowStandalone(Path(".local/airflow-ui"))
    assert server.env["AIRFLOW_HOME"] == str(tmp_path / ".local" / "airflow-ui")
    server.home.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "airflow"), "config", "get-value", "database", "sql_alchemy_conn"],
        env=server.env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-1500:]
    assert result.stdout.strip().startswith(f"sqlite:///{tmp_path}/.local/airflow-ui/airflow.db")


def _wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_scheduler_that_exited_is_started_again_in_the_group(standalone, tmp_path, monkeypatch):
    """As under ``airflow standalone``: the scheduler is a child its leader does not reap, so an
    exited one stays a zombie; ``revive_scheduler`` starts ``airflow scheduler`` in the group."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    airflow = fake_bin / "airflow"
    airflow.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import time; time.sleep(300)' \"$@\"\n")
    airflow.chmod(0o755)
    monkeypatch.setattr(standalone, "VENV_BIN", fake_bin)
    leader_code = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', 'scheduler'])\n"
        "time.sleep(300)\n"
    )
    server = standalone.AirflowStandalone(tmp_path / "home")
    server._proc = subprocess.Popen([sys.executable, "-c", leader_code], start_new_session=True)
    server._log = open(tmp_path / "standalone.log", "ab")
    try:
        _wait_for(server.scheduler_alive, "the first scheduler never showed up")
        assert server.revive_scheduler() is False  # one runs: nothing started
        (first,) = [
            int(p.name)
            for p in Path("/proc").glob("[0-9]*")
            if (p / "cmdline").exists()
            and b"scheduler" in (p / "cmdline").read_bytes()
            and os.getpgid(int(p.name)) == server._proc.pid
        ]
        os.kill(first, signal.SIGKILL)
        _wait_for(lambda: not server.scheduler_alive(), "the killed scheduler still counts as running")
        assert server.revive_scheduler() is True
        _wait_for(server.scheduler_alive, "no scheduler after the revival")
        assert server.revive_scheduler() is False
    finally:
        server.stop(timeout=1)
