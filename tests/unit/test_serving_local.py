"""Local serving control without a model: state, process identity, refusals before starting."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from eksml.serving.local import LocalServing, ServerProcess, ServingError, _is_our_server, deploy_local
from eksml.serving.manifests import serving_spec
from eksml.settings import Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(store_uri=(tmp_path / "store").as_uri(), inference_port=1)


def write_state(state_dir, **fields) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    base = {
        "pid": 1,
        "port": 8080,
        "version": "v1",
        "model_uri": "file:///m/v1",
        "model_name": "fashion-mnist",
        "log_path": "/dev/null",
        "started_at": "now",
    }
    (state_dir / "state.json").write_text(json.dumps({**base, **fields}))


def test_no_state_or_a_stale_state_means_nothing_serves(settings, tmp_path):
    serving = LocalServing(settings, tmp_path / "serving")
    assert serving.current() is None
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_state(tmp_path / "serving", pid=dead.pid)
    assert serving.current() is None
    write_state(tmp_path / "serving", pid=os.getpid())  # alive, but not a server: never trusted
    assert serving.current() is None


def test_only_an_inference_server_on_the_recorded_port_counts_as_ours(tmp_path):
    script = tmp_path / "serve.py"
    script.write_text("import time; time.sleep(30)")
    proc = subprocess.Popen([sys.executable, str(script), "--model-uri", "x", "--http-port", "18123"])
    try:
        for _ in range(100):  # Popen may return before the child has exec'd
            if _is_our_server(proc.pid, 18123):
                break
            time.sleep(0.05)
        assert _is_our_server(proc.pid, 18123)
        assert not _is_our_server(proc.pid, 18124)
        assert not _is_our_server(os.getpid(), 18123)
    finally:
        proc.kill()
        proc.wait()


def test_a_stable_port_held_by_someone_else_is_refused_before_any_start(settings, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        serving = LocalServing(settings, tmp_path / "serving")
        with pytest.raises(ServingError, match=f"stable port 127.0.0.1:{port} is taken"):
            serving.deploy("file:///m/v2", "v2", port, check=lambda server: pytest.fail("nothing may start"))
    assert not (tmp_path / "serving" / "logs").exists()


def test_a_missing_virtualenv_names_the_build_command(tmp_path):
    settings = Settings(store_uri=(tmp_path / "s").as_uri(), venvs_dir=str(tmp_path / "venvs"))
    with pytest.raises(Exception, match="build-local-venv.sh inference"):
        LocalServing(settings, tmp_path / "serving").start("file:///m/v1", "v1", 18125)


def test_a_version_without_metrics_is_refused_before_any_start(settings, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ServingError, match="no metrics.json"):
        deploy_local(str(tmp_path / "empty"), "v1", 18126, settings=settings, state_dir=tmp_path / "serving")
    assert not (tmp_path / "serving").exists()


def test_the_local_process_and_the_pod_run_the_same_program(settings):
    spec = serving_spec("file:///m/v1", "v1", "fashion-mnist", host="127.0.0.1", port=18127)
    assert spec.container_command() == ["python", "/opt/eksml/serve.py"]
    assert spec.args[spec.args.index("--host") + 1] == "127.0.0.1"
    assert spec.args[spec.args.index("--http-port") + 1] == "18127"
    with pytest.raises(ValueError, match="model_uri"):
        serving_spec("ftp://m/v1", "v1", "fashion-mnist")


def test_server_urls_are_loopback():
    server = ServerProcess(pid=1, port=8080, version="v", model_uri="u", model_name="m", log_path="l", started_at="t")
    assert server.url == "http://127.0.0.1:8080"
