"""A local workload dies with its task process (kill -9 included), and a retry never runs beside a leftover."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from eksml.local.runner import LocalRunner, workload_id
from eksml.settings import load_settings
from eksml.specs import WorkloadSpec

ROOT = Path(__file__).resolve().parents[2]

#: A workload that, like horovodrun, starts a child in a session of its own, then both sleep.
WORKLOAD = textwrap.dedent("""
    import os, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    with open(sys.argv[1], "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    time.sleep(600)
""")

TASK = textwrap.dedent("""
    import sys
    sys.path.insert(0, {plugins!r})
    from eksml.local.runner import LocalRunner
    from eksml.settings import load_settings
    from eksml.specs import WorkloadSpec
    settings = load_settings({{"images_dir": {images!r}, "venvs_dir": {venvs!r}}})
    LocalRunner(settings).run(WorkloadSpec(name="sleeper", image="img", script="work.py", args=({pids!r},)))
""")


@pytest.fixture
def image(tmp_path):
    (tmp_path / "images" / "img").mkdir(parents=True)
    (tmp_path / "images" / "img" / "work.py").write_text(WORKLOAD)
    (tmp_path / "venvs" / "img" / "bin").mkdir(parents=True)
    (tmp_path / "venvs" / "img" / "bin" / "python").symlink_to(sys.executable)
    return tmp_path


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _wait_for(path: Path, timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return [int(p) for p in path.read_text().split()]
        time.sleep(0.1)
    raise AssertionError(f"workload never started ({path})")


def _start_task(image: Path, pids_file: Path, **popen: object) -> subprocess.Popen:
    """A task process running the sleeper workload through the LocalRunner."""
    script = TASK.format(
        plugins=str(ROOT / "plugins"), images=str(image / "images"), venvs=str(image / "venvs"), pids=str(pids_file)
    )
    return subprocess.Popen([sys.executable, "-c", script], **popen)


def test_kill_9_of_the_task_ends_its_workload(image):
    pids_file = image / "pids"
    task = _start_task(image, pids_file)
    workload = _wait_for(pids_file)
    try:
        assert all(_alive(p) for p in workload)
        os.kill(task.pid, signal.SIGKILL)
        task.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(p) for p in workload):
            time.sleep(0.2)
        assert [p for p in workload if _alive(p)] == [], "workload outlived its task"
    finally:
        for pid in workload:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_retry_ends_the_leftover_of_an_earlier_attempt(image, tmp_path):
    """Even when guard and task were both killed, the retry finds the leftover by its workload id."""
    settings = load_settings({"images_dir": str(image / "images"), "venvs_dir": str(image / "venvs")})
    (image / "images" / "img" / "quick.py").write_text("print('second attempt ran')\n")
    spec = WorkloadSpec(name="trainer", image="img", script="quick.py", args=("--model-uri", "x"))
    leftover = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"],
        env={**os.environ, "EKSML_WORKLOAD_ID": workload_id(spec)},
        start_new_session=True,
    )
    try:
        assert LocalRunner(settings).run(spec) == ["second attempt ran"]
        assert leftover.wait(timeout=30) == -signal.SIGTERM
    finally:
        if leftover.poll() is None:
            leftover.kill()


def test_bad_input_exit_is_not_retried_and_the_reason_keeps_the_last_lines(image):
    """Exit status 2 ("can never succeed") becomes AirflowFailException; other failures stay retryable."""
    from airflow.sdk.exceptions import AirflowFailException

    from eksml.dag_defaults import failure_reason
    from eksml.local.runner import LocalRunError

    settings = load_settings({"images_dir": str(image / "images"), "venvs_dir": str(image / "venvs")})
    script = (
        "import sys; print('loading data', flush=True); "
        "print('error: labels outside 0..9', file=sys.stderr); sys.exit({})"
    )
    for rc, retried in ((2, False), (1, True)):
        (image / "images" / "img" / f"exit{rc}.py").write_text(script.format(rc))
        with pytest.raises(LocalRunError) as failure:
            LocalRunner(settings).run(WorkloadSpec(name="train-tensorflow", image="img", script=f"exit{rc}.py"))
        assert isinstance(failure.value, AirflowFailException) is not retried
        assert failure_reason(failure.value) == (
            f"train-tensorflow exited with code {rc}; last lines: | loading data | error: labels outside 0..9"
        )


def test_entrypoints_use_the_bad_input_status_the_runner_knows():
    import re

    from eksml.local.runner import EXIT_BAD_INPUT

    for entrypoint in ("tf-fashion-mnist/train.py", "mxnet-horovod/train.py", "inference/evaluate.py"):
        source = (ROOT / "images" / entrypoint).read_text()
        assert re.search(rf"^BAD_INPUT = {EXIT_BAD_INPUT}$", source, re.M), entrypoint


#: A SageMaker-contract entrypoint that says it started, then waits to be released.
CONTRACT_WORKLOAD = textwrap.dedent("""
    import json, os, pathlib, time
    hps = json.loads(os.environ["SM_HPS"])
    pathlib.Path(hps["started"]).write_text(str(os.getpid()))
    while not pathlib.Path(hps["release"]).exists():
        time.sleep(0.1)
    pathlib.Path(os.environ["SM_MODEL_DIR"], "metrics.json").write_text("{}")
""")


def test_two_runs_under_the_sagemaker_contract_do_not_end_each_other(image, tmp_path):
    """Their processes carry no run-specific arguments; each is still known by its own run's spec."""
    import threading

    from eksml.sagemaker.contract import run_training_locally

    (image / "images" / "img" / "contract.py").write_text(CONTRACT_WORKLOAD)
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.gz").write_bytes(b"x")
    store = tmp_path / "store"
    settings = load_settings(
        {"images_dir": str(image / "images"), "venvs_dir": str(image / "venvs"), "store_uri": store.as_uri()}
    )
    release = tmp_path / "release"

    def spec(run: str) -> WorkloadSpec:
        return WorkloadSpec(
            name="train-tensorflow",
            image="img",
            script="contract.py",
            framework="tensorflow",
            locations={"data_uri": data.as_uri(), "model_uri": f"{store.as_uri()}/staging/fm/{run}"},
            hyperparameters={"started": str(tmp_path / f"started-{run}"), "release": str(release)},
        )

    results: dict[str, object] = {}

    def train(run: str) -> None:
        try:
            results[run] = run_training_locally(spec(run), settings, job_name=f"job-{run}", timeout=120)
        except Exception as exc:  # the assertion below reports it
            results[run] = exc

    first = threading.Thread(target=train, args=("run-a",))
    first.start()
    _wait_for(tmp_path / "started-run-a")
    second = threading.Thread(target=train, args=("run-b",))
    second.start()
    _wait_for(tmp_path / "started-run-b")
    release.write_text("go")
    first.join(timeout=120)
    second.join(timeout=120)
    for run in ("run-a", "run-b"):
        assert not isinstance(results[run], Exception), f"{run}: {results[run]}"
        assert Path(results[run].model_artifact.removeprefix("file://")).is_file()


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    if int(handle.read().split(") ")[1].split()[1]) == pid:
                        found.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return found


def test_kill_9_of_the_guard_ends_its_workload_and_the_task_sees_it(image):
    pids_file = image / "pids"
    task = _start_task(image, pids_file, stderr=subprocess.PIPE, text=True)
    workload = _wait_for(pids_file)
    try:
        (guard,) = _children(task.pid)
        os.kill(guard, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(p) for p in workload):
            time.sleep(0.2)
        assert [p for p in workload if _alive(p)] == [], "workload outlived its guard"
        _, err = task.communicate(timeout=60)  # the task no longer waits for the workload's output
        assert task.returncode != 0 and "sleeper exited with code -9" in err
    finally:
        task.kill()
        for pid in workload:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
