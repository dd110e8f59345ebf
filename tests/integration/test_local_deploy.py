"""Local deployment on real exports: a version serves on the stable port only after it
answered correctly, and a broken version leaves the previous one serving."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.request

import inference_models as im
import pytest

from eksml.serving.local import LocalServing, ServingError, deploy_local, stop_local
from eksml.serving.smoke import SmokeTestError
from eksml.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    missing = im.missing_venvs("inference", "tf-fashion-mnist", "mxnet-horovod")
    if missing:
        pytest.skip(f"virtualenv(s) missing: {', '.join(missing)} (bash scripts/setup.sh)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root = tmp_path_factory.mktemp("deploy")
    store = root / "models"
    versions = {
        "tf-good": im.copy_version(im.trained_model("tensorflow"), store / "tf-good"),
        "mx-good": im.copy_version(im.trained_model("mxnet"), store / "mx-good"),
    }
    versions["mx-corrupt"] = im.corrupt(im.copy_version(versions["mx-good"], store / "mx-corrupt"), "truncate")
    versions["mx-scrambled"] = im.scramble_weights(im.copy_version(versions["mx-good"], store / "mx-scrambled"))
    settings = Settings(store_uri=store.as_uri(), inference_port=port)
    state = root / "serving"
    yield {"port": port, "settings": settings, "state": state, "versions": versions}
    stop_local(settings, state)


def served(port: int) -> tuple[str, list[int]]:
    images, _ = im.real_test_images(8)
    body = json.dumps({"instances": images}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/models/fashion-mnist:predict",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    return answer["model_version"], [p["class"] for p in answer["predictions"]]


def deploy(env, version: str):
    return deploy_local(str(env["versions"][version]), version, settings=env["settings"], state_dir=env["state"])


def test_first_deploy_serves_on_the_stable_port(env):
    result = deploy(env, "tf-good")
    assert result["changed"] is True and result["previous"] is None
    assert result["smoke"]["passed"] is True and result["smoke"]["accuracy"] >= result["smoke"]["threshold"]
    assert result["url"] == f"http://127.0.0.1:{env['port']}"
    state = json.loads((env["state"] / "state.json").read_text())
    assert state["version"] == "tf-good" and state["port"] == env["port"] and state["pid"] == result["pid"]
    assert served(env["port"])[0] == "tf-good"


@pytest.mark.parametrize(
    ("version", "error", "reason"),
    [
        ("mx-corrupt", ServingError, "exited with status 2 before it was ready[\\s\\S]*cannot load model.onnx"),
        ("mx-scrambled", SmokeTestError, "accuracy .* on 32 test images is below"),
    ],
)
def test_a_broken_version_fails_and_the_previous_one_keeps_answering(env, version, error, reason):
    before_pid = LocalServing(env["settings"], env["state"]).current().pid
    before = served(env["port"])
    with pytest.raises(error, match=reason):
        deploy(env, version)
    assert served(env["port"]) == before
    current = LocalServing(env["settings"], env["state"]).current()
    assert (current.version, current.pid) == ("tf-good", before_pid)


def test_a_good_version_replaces_the_old_one(env):
    old_pid = LocalServing(env["settings"], env["state"]).current().pid
    result = deploy(env, "mx-good")
    assert result["changed"] is True and result["previous"] == "tf-good"
    assert served(env["port"])[0] == "mx-good"
    current = LocalServing(env["settings"], env["state"]).current()
    assert current.version == "mx-good" and current.pid != old_pid


def test_redeploying_the_serving_version_only_checks_it(env):
    pid = LocalServing(env["settings"], env["state"]).current().pid
    result = deploy(env, "mx-good")
    assert result["changed"] is False and result["smoke"]["passed"] is True
    assert LocalServing(env["settings"], env["state"]).current().pid == pid


def test_bad_requests_fail_before_any_process_starts(env, tmp_path):
    with pytest.raises(ServingError, match="no metrics.json"):
        deploy_local(str(tmp_path), "nothing", settings=env["settings"], state_dir=env["state"])
    assert served(env["port"])[0] == "mx-good"


def test_a_killed_server_is_restarted_by_its_supervisor_and_answers_again(env, monkeypatch, capsys):
    from eksml.serving import __main__ as cli
    from eksml.serving import local

    serving = LocalServing(env["settings"], env["state"])
    current = serving.current()
    before = served(env["port"])
    first = local.supervision(current)["server_pid"]
    subprocess.run(["kill", "-9", str(first)], check=True)  # what the OOM killer or a crash does
    deadline = time.monotonic() + 300
    while True:
        record = local.supervision(current)
        if record.get("restarts") == 1 and record.get("server_pid") not in (None, first):
            try:
                if served(env["port"]) == before:  # the restarted server, same version, same answers
                    break
            except OSError:
                pass
        assert time.monotonic() < deadline, f"not restarted: {record}"
        time.sleep(0.5)
    assert serving.current() == current  # the same supervisor still owns the stable port
    assert record["exits"][-1]["status"] == -signal.SIGKILL
    monkeypatch.setenv("EKSML_SERVING_DIR", str(env["state"]))
    monkeypatch.setenv("EKSML_INFERENCE_PORT", str(env["port"]))
    assert cli.main(["status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["restarts"] == 1 and status["last_exit"]["status"] == -signal.SIGKILL
    assert status["server_pid"] == record["server_pid"] and status["version"] == "mx-good"


def test_stop_frees_the_port(env):
    assert stop_local(env["settings"], env["state"]) == "mx-good"
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server binds
        sock.bind(("127.0.0.1", env["port"]))  # free again
    assert LocalServing(env["settings"], env["state"]).current() is None
