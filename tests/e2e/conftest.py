"""One real ``airflow standalone`` per test session, shared by the REST and browser tests.

The server runs the project's DAGs in the local profile with a throwaway AIRFLOW_HOME and a
``file://`` store. Its configured source is a small drop of real Fashion-MNIST (the first
2,000 training and 500 test images of the Debian package, written as valid IDX files), so
runs that take the DAG's default params (scheduled and asset-triggered runs) finish in
about a minute on two cores instead of training on all 60,000 images.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dag_runs import registered_versions
from project_files import load_script
from slices import write_small_drop

ROOT = Path(__file__).resolve().parents[2]
TF_VENV = ROOT / ".venvs" / "tf-fashion-mnist"
ARTIFACTS = ROOT / "artifacts"
TRAINING_DAG = "fashion_mnist_training"
TERMINAL = {"success", "failed"}


def _retrying_transport() -> Any:
    """httpx's transport, asking again (twice, 2 s apart) when Airflow answers 500 "Database error".

    The standalone Airflow of these tests keeps its metadata in SQLite, one writer at a time; on a
    machine loaded by the other tiers a request waited out SQLite's 60 s lock timeout
    (scripts/airflow_standalone.py) and got that 500, its transaction rolled back. A client of a
    real deployment (PostgreSQL) would not see it; the tests check the pipeline, not SQLite.
    """
    import httpx

    class Retrying(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            for attempt in range(3):
                if attempt:
                    time.sleep(2)
                response = super().handle_request(request)
                if response.status_code != 500:
                    return response
                response.read()
                if b'"Database error"' not in response.content:
                    return response
            return response

    return Retrying()


class AirflowApi:
    """A thin client of Airflow's public REST API (``/api/v2``) with a bearer token."""

    def __init__(self, base_url: str, password: str) -> None:
        import httpx

        self.base_url = base_url
        token = httpx.post(f"{base_url}/auth/token", json={"username": "admin", "password": password}, timeout=30)
        token.raise_for_status()
        self.http = httpx.Client(
            base_url=f"{base_url}/api/v2",
            timeout=60,
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            transport=_retrying_transport(),
        )

    def request(self, method: str, path: str, **kwargs: Any):
        return self.http.request(method, path, **kwargs)

    def get(self, path: str, **params: Any) -> dict:
        response = self.http.get(path, params=params)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:500]}"
        return response.json()

    def unpause(self, dag_id: str) -> None:
        response = self.http.patch(f"/dags/{dag_id}", json={"is_paused": False})
        assert response.status_code == 200, response.text

    def trigger(self, dag_id: str, conf: dict) -> dict:
        response = self.http.post(f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        assert response.status_code == 200, f"{response.status_code} {response.text[:500]}"
        return response.json()

    def runs(self, dag_id: str) -> list[dict]:
        return self.get(f"/dags/{dag_id}/dagRuns", limit=100, order_by="run_after")["dag_runs"]

    def wait_for_new_run(self, dag_id: str, known: set[str], run_type: str, timeout: float = 120) -> dict:
        """The first run of ``run_type`` whose id is not in ``known``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for run in self.runs(dag_id):
                if run["dag_run_id"] not in known and run["run_type"] == run_type:
                    return run
            time.sleep(2)
        raise AssertionError(f"no new {run_type} run of {dag_id} within {timeout:.0f} s")

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 600) -> dict:
        """Poll until the run is success or failed; return it."""
        deadline = time.monotonic() + timeout
        run: dict = {}
        while time.monotonic() < deadline:
            run = self.get(f"/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in TERMINAL:
                return run
            time.sleep(3)
        raise AssertionError(
            f"{dag_id} {run_id} still {run.get('state')} after {timeout:.0f} s: {self.task_states(dag_id, run_id)}"
        )

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        tis = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100)["task_instances"]
        return {ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""): ti["state"] for ti in tis}

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        response = self.http.get(
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": True},
            headers={"Accept": "application/json"},
        )
        assert response.status_code == 200, response.text[:500]
        content = response.json().get("content", "")
        if isinstance(content, list):
            return "\n".join(item.get("event", "") if isinstance(item, dict) else str(item) for item in content)
        return str(content)

    def asset_id(self, name: str) -> int:
        assets = self.get("/assets", name_pattern=name)["assets"]
        matches = [a["id"] for a in assets if a["name"] == name]
        assert matches, f"asset {name} not registered: {assets}"
        return matches[0]


class ServerUnderTest:
    """What the tests need to know about the running server."""

    def __init__(self, standalone: Any, store: Path, drop: Path) -> None:
        self.standalone = standalone
        self.base_url = standalone.base_url
        self.store = store
        self.drop = drop
        self.api = AirflowApi(standalone.base_url, standalone.admin_password())

    @property
    def models(self) -> Path:
        return self.store / "models" / "fashion-mnist"

    def versions(self) -> dict[str, dict]:
        """Registered model versions: name -> metadata.json."""
        return registered_versions(self.store)

    def airflow_cli(self, *args: str, timeout: float = 300):
        """Run the ``airflow`` CLI against this server's metadata database."""
        import subprocess

        return subprocess.run(
            [str(ROOT / ".venv" / "bin" / "airflow"), *args],
            env=self.standalone.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture
def store(tmp_path, monkeypatch, airflow_db) -> Path:
    """A fresh ``file://`` store for one ``dag.test()`` run in the local profile."""
    monkeypatch.setenv("EKSML_STORE_URI", (tmp_path / "store").as_uri())
    monkeypatch.setenv("EKSML_PROFILE", "local")
    return tmp_path / "store"


@pytest.fixture(scope="session")
def small_drop(tmp_path_factory, dataset_dir) -> Path:
    return write_small_drop(dataset_dir, tmp_path_factory.mktemp("drop") / "fashion-mnist-small")


#: The shared server's fixture, the id of the last test that uses it, and how to stop it early.
SERVER_FIXTURE = "airflow_server"
_last_server_test: list[str] = []
_stop_server: list[Callable[[], None]] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the tests of the shared server one after the other, from where the first of them
    stands, so that the server stops after the last of them instead of idling (scheduler loop,
    DAG re-parsing) beside the in-process DAG tests that train."""
    users = [item for item in items if SERVER_FIXTURE in getattr(item, "fixturenames", ())]
    if not users:
        return
    first = items.index(users[0])
    others = [item for item in items if SERVER_FIXTURE not in getattr(item, "fixturenames", ())]
    items[:] = others[:first] + users + others[first:]
    _last_server_test[:] = [users[-1].nodeid]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    result = yield
    if _last_server_test == [item.nodeid]:
        for stop in list(_stop_server):
            stop()
    return result


@pytest.fixture(scope="session")
def airflow_server(tmp_path_factory, small_drop) -> Iterator[ServerUnderTest]:
    """A real ``airflow standalone`` on loopback; the training DAG unpaused. Stopped after the
    last test that uses it (or at the end of the session)."""
    if not TF_VENV.exists():
        pytest.skip("image virtualenv .venvs/tf-fashion-mnist missing: run scripts/setup.sh")
    module = load_script("airflow_standalone", ROOT / "scripts" / "airflow_standalone.py")
    base = tmp_path_factory.mktemp("standalone")
    store = base / "store"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        inference_port = sock.getsockname()[1]
    server = module.AirflowStandalone(
        base / "airflow-home",
        env={
            "EKSML_PROFILE": "local",
            "EKSML_STORE_URI": store.as_uri(),
            "EKSML_SOURCE_DATA_URI": str(small_drop),
            # A deployment run's model server: a free port and a state folder of its own, never the developer's.
            "EKSML_INFERENCE_PORT": str(inference_port),
            "EKSML_SERVING_DIR": str(base / "serving"),
            # Parsing the training DAG can take tens of seconds while the machine trains.
            "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "300",
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "240",
        },
    )
    under_test: ServerUnderTest | None = None

    def stop() -> None:
        if stop not in _stop_server:
            return  # stopped already
        _stop_server.remove(stop)
        ARTIFACTS.mkdir(exist_ok=True)
        if under_test is not None:
            save_run_timings(under_test.api, ARTIFACTS / "airflow-run-timings.json")
        server.stop()
        subprocess.run(  # the model server a deployment run started, if any
            [str(ROOT / ".venv" / "bin" / "python"), "-m", "eksml.serving", "stop"],
            env=server.env,
            cwd=ROOT,
            capture_output=True,
            timeout=120,
        )
        shutil.copy(server.log_path, ARTIFACTS / "airflow-standalone.log")

    started = time.monotonic()
    server.start(timeout=420)
    print(f"airflow standalone healthy after {time.monotonic() - started:.0f} s at {server.base_url}")
    _stop_server.append(stop)
    try:
        under_test = ServerUnderTest(server, store, small_drop)
        wait_for_dags(under_test.api, {TRAINING_DAG, "upstream_data_landing", "trigger_training_with_conf"})
        yield under_test
    finally:
        stop()


def save_run_timings(api: AirflowApi, path: Path) -> None:
    """Every run and task duration of the session, for reading why a run was slow."""
    timings = {}
    try:
        for dag in api.get("/dags", limit=100)["dags"]:
            for run in api.runs(dag["dag_id"]):
                tis = api.get(f"/dags/{dag['dag_id']}/dagRuns/{run['dag_run_id']}/taskInstances", limit=100)
                timings[f"{dag['dag_id']}/{run['dag_run_id']}"] = {
                    "type": run["run_type"],
                    "state": run["state"],
                    "start": run["start_date"],
                    "end": run["end_date"],
                    "tasks": {ti["task_id"]: [ti["state"], ti["duration"]] for ti in tis["task_instances"]},
                }
    except Exception as exc:  # diagnostics only: never hide the test outcome
        timings["error"] = repr(exc)
    path.write_text(json.dumps(timings, indent=1))


def wait_for_dags(api: AirflowApi, dag_ids: set[str], timeout: float = 300) -> dict[str, dict]:
    """Wait until the dag-processor has serialized every DAG in ``dag_ids`` (or an import error)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        errors = api.get("/importErrors")
        assert errors["total_entries"] == 0, json.dumps(errors["import_errors"], indent=1)[:3000]
        dags = {d["dag_id"]: d for d in api.get("/dags", limit=100)["dags"]}
        if dag_ids <= set(dags):
            return dags
        time.sleep(3)
    raise AssertionError(f"DAGs {sorted(dag_ids)} not all parsed within {timeout:.0f} s")
