"""MPIJobTrigger and MPIJobOperator against a Kubernetes API answered on 127.0.0.1.

The server speaks the API's JSON for the calls these classes make (MPIJob create/get/delete,
pod list by label selector, pod log) and plays scripted status sequences of the kind the MPI
operator writes. The provider's hooks reach it through a kubeconfig file and an Airflow
connection, exactly as they would reach EKS; only the cluster's behaviour is scripted.

Kept beside ``tests/k8s/test_k8s_mpijob.py`` (the real MPI operator, API server and
controllers) because it is the better tool for the trigger's state machine: restarts,
suspension and both deadlines in milliseconds, which a real operator produces only over
minutes or not on demand. What it does not prove: that the MPI operator writes these
conditions, that the API server admits the job, or that RBAC allows these calls.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlparse

import pytest

from eksml.kubernetes.manifests import job_name, render_mpijob
from eksml.kubernetes.operators import MPIJobOperator
from eksml.kubernetes.triggers import MPIJobTrigger
from eksml.settings import Settings
from eksml.specs import WorkloadSpec, training_spec

NS = "ml-training"
CONN_ID = "kubernetes_localapi"
TOKEN = "local-test-token"
MPIJOBS = f"/apis/kubeflow.org/v2beta1/namespaces/{NS}/mpijobs"


# --- condition lists as the MPI operator writes them -------------------------------------------


def _cond(ctype, status="True", reason="", message=""):
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "lastUpdateTime": "2026-01-01T00:00:00Z",
    }


PENDING = {}
CREATED = {"conditions": [_cond("Created", reason="MPIJobCreated")], "startTime": "2026-01-01T00:00:00Z"}
RUNNING = {
    "conditions": [_cond("Created", reason="MPIJobCreated"), _cond("Running", reason="MPIJobRunning")],
    "replicaStatuses": {"Launcher": {"active": 1}, "Worker": {"active": 2}},
}
RESTARTING = {"conditions": [_cond("Created", reason="MPIJobCreated"), _cond("Restarting", reason="MPIJobRestarting")]}
SUSPENDED = {
    "conditions": [
        _cond("Created", reason="MPIJobCreated"),
        _cond("Suspended", reason="MPIJobSuspended"),
        _cond("Running", "False", "MPIJobSuspended"),
    ]
}
SUCCEEDED = {
    "conditions": [
        _cond("Created", reason="MPIJobCreated"),
        _cond("Running", "False", "MPIJobRunning"),
        _cond("Succeeded", reason="MPIJobSucceeded", message=f"MPIJob {NS}/j successfully completed."),
    ],
    "completionTime": "2026-01-01T01:00:00Z",
}
FAILED = {
    "conditions": [
        _cond("Created", reason="MPIJobCreated"),
        _cond("Running", "False", "MPIJobRunning"),
        _cond("Failed", reason="BackoffLimitExceeded/Error", message="Job has reached the specified backoff limit"),
    ],
    "completionTime": "2026-01-01T01:00:00Z",
}


# --- the API server ----------------------------------------------------------------------------


class KubeApi:
    """State behind the server: MPIJobs with status scripts, pods with logs, a request record."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.jobs: dict[str, dict] = {}
        self.scripts: dict[str, list[dict]] = {}
        self.pods: list[dict] = []
        self.logs: dict[str, str] = {}
        self.requests: list[dict] = []
        #: For jobs created through the API: status script and launcher log to give them.
        self.next_script: list[dict] = [SUCCEEDED]
        self.next_launcher_log = "rank 0: epoch 1 accuracy 0.81\n"
        self.next_launcher_exit: int | None = None

    def add_job(self, name: str, script: list[dict]) -> None:
        self.jobs[name] = {
            "apiVersion": "kubeflow.org/v2beta1",
            "kind": "MPIJob",
            "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}"},
            "spec": {},
        }
        self.scripts[name] = list(script)

    def add_pod(
        self, name: str, job: str, role: str, created: str, phase: str, log: str, exit_code: int | None = None
    ) -> None:
        status: dict = {"phase": phase}
        if exit_code is not None:  # a terminated container, as the kubelet reports it
            status["containerStatuses"] = [
                {
                    "name": f"mpi-{role}",
                    "image": "x",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": exit_code, "reason": "Error" if exit_code else "Completed"}},
                }
            ]
        self.pods.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": NS,
                    "creationTimestamp": created,
                    "labels": {"training.kubeflow.org/job-name": job, "training.kubeflow.org/job-role": role},
                },
                "spec": {"containers": [{"name": f"mpi-{role}", "image": "x"}]},
                "status": status,
            }
        )
        self.logs[name] = log

    def calls(self, method: str, path_prefix: str = "") -> list[dict]:
        return [r for r in self.requests if r["method"] == method and r["path"].startswith(path_prefix)]


def _status(code: int, reason: str, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class _Handler(BaseHTTPRequestHandler):
    api: KubeApi

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _reply(self, code: int, body, content_type: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        api = self.api
        with api.lock:
            api.requests.append(
                {
                    "method": method,
                    "path": url.path,
                    "query": parse_qs(url.query),
                    "auth": self.headers.get("Authorization"),
                    "body": body,
                }
            )
            code, reply, ctype = self._route(method, url.path, parse_qs(url.query), body)
        self._reply(code, reply, ctype)

    def _route(self, method, path, query, body):
        api = self.api
        parts = path.strip("/").split("/")
        if "namespaces" in parts and parts[parts.index("namespaces") + 1] != NS:  # RBAC: one namespace only
            return (
                403,
                _status(403, "Forbidden", "forbidden: User cannot get resource in this namespace"),
                "application/json",
            )
        if path == MPIJOBS and method == "POST":
            name = body["metadata"]["name"]
            if name in api.jobs:
                return (
                    409,
                    _status(409, "AlreadyExists", f'mpijobs.kubeflow.org "{name}" already exists'),
                    "application/json",
                )
            api.add_job(name, api.next_script)
            api.jobs[name].update({k: v for k, v in body.items() if k != "metadata"})
            api.add_pod(
                f"{name}-launcher-abcde",
                name,
                "launcher",
                "2026-01-01T00:01:00Z",
                "Succeeded" if not api.next_launcher_exit else "Failed",
                api.next_launcher_log,
                api.next_launcher_exit,
            )
            return 201, api.jobs[name], "application/json"
        if path.startswith(MPIJOBS + "/") and len(parts) == 7:
            name = parts[-1]
            if name not in api.jobs:
                return 404, _status(404, "NotFound", f'mpijobs.kubeflow.org "{name}" not found'), "application/json"
            if method == "DELETE":
                del api.jobs[name]
                deleted = {"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name}}
                return 200, deleted, "application/json"
            script = api.scripts[name]
            status = script.pop(0) if len(script) > 1 else script[0]
            return 200, {**api.jobs[name], "status": status}, "application/json"
        if path == f"/api/v1/namespaces/{NS}/pods" and method == "GET":
            terms = query.get("labelSelector", [""])[0].split(",")
            # Equality terms select; set-based and negative terms (KPO's "!already_checked") match here.
            wanted = dict(t.split("=", 1) for t in terms if "=" in t and "!=" not in t)
            items = [p for p in api.pods if wanted.items() <= p["metadata"]["labels"].items()]
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}, "application/json"
        if path == f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets" and method == "POST":
            return 201, body, "application/json"  # the job's budget (its effect: tests/k8s/test_k8s_production.py)
        if path == f"/api/v1/namespaces/{NS}/pods" and method == "POST":
            meta = {**body["metadata"], "uid": f"uid-{body['metadata']['name']}"}  # as the API server assigns one
            pod = {**body, "metadata": meta, "status": {"phase": "Pending"}}
            api.pods.append(pod)
            return 201, pod, "application/json"
        if path.startswith(f"/api/v1/namespaces/{NS}/pods/") and len(parts) == 6 and method == "GET":
            found = [p for p in api.pods if p["metadata"]["name"] == parts[-1]]
            if not found:
                return 404, _status(404, "NotFound", f'pods "{parts[-1]}" not found'), "application/json"
            return 200, found[0], "application/json"
        if path.startswith(f"/api/v1/namespaces/{NS}/pods/") and path.endswith("/log") and method == "GET":
            pod = parts[-2]
            if pod not in api.logs:
                return 404, _status(404, "NotFound", f'pods "{pod}" not found'), "application/json"
            return 200, api.logs[pod], "text/plain"
        return 404, _status(404, "NotFound", f"no route for {method} {path}"), "application/json"

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_DELETE(self):
        self._handle("DELETE")


@pytest.fixture(scope="module")
def kube_api(tmp_path_factory):
    api = KubeApi()
    handler = type("Handler", (_Handler,), {"api": api})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path_factory.mktemp("kube") / "config"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "local",
                "clusters": [{"name": "local", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
                "users": [{"name": "tester", "user": {"token": TOKEN}}],
                "contexts": [{"name": "local", "context": {"cluster": "local", "user": "tester", "namespace": NS}}],
            }
        )
    )
    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(
        {"conn_type": "kubernetes", "extra": {"kube_config_path": str(kubeconfig)}}
    )
    yield api
    os.environ.pop(f"AIRFLOW_CONN_{CONN_ID.upper()}", None)
    server.shutdown()
    server.server_close()


@pytest.fixture()
def api(kube_api):
    kube_api.reset()
    return kube_api


SETTINGS = Settings(
    profile="aws",
    store_uri="s3://eksml-bucket/store",
    namespace=NS,
    kubernetes_conn_id=CONN_ID,
    image_registry="public.ecr.aws/eksml",
    image_tag="0.3.0",
)
SPEC = training_spec(
    framework="mxnet",
    data_uri="s3://eksml-bucket/store/data/x",
    model_uri="s3://eksml-bucket/store/models/v9",
    checkpoint_uri="s3://eksml-bucket/store/ckpt/v9",
    epochs=2,
    batch_size=64,
    learning_rate=0.05,
    gpus=1,
    workers=2,
)


def first_event(trigger: MPIJobTrigger, timeout: float = 20.0) -> dict:
    async def take():
        async for event in trigger.run():
            return event.payload
        raise AssertionError("trigger ended without an event")

    return asyncio.run(asyncio.wait_for(take(), timeout))


def trigger_for(name: str, **kwargs) -> MPIJobTrigger:
    return MPIJobTrigger(name=name, namespace=NS, kubernetes_conn_id=CONN_ID, poll_interval=0.01, **kwargs)


# --- the trigger's state machine ----------------------------------------------------------------


@pytest.mark.parametrize(
    "script, status, phase",
    [
        ([PENDING, CREATED, CREATED, RUNNING, RUNNING, SUCCEEDED], "success", "Succeeded"),
        ([CREATED, RUNNING, FAILED], "failed", "Failed"),
        ([CREATED, RUNNING, RESTARTING, RESTARTING, RUNNING, SUCCEEDED], "success", "Succeeded"),
        ([CREATED, SUSPENDED, SUSPENDED, CREATED, RUNNING, SUCCEEDED], "success", "Succeeded"),
    ],
    ids=["created-running-succeeded", "running-failed", "restarting-running-succeeded", "suspended-resumed"],
)
def test_trigger_follows_the_job_to_its_end(api, script, status, phase):
    api.add_job("j", script)
    event = first_event(trigger_for("j"))
    assert event["status"] == status and event["phase"] == phase
    assert event["name"] == "j" and event["namespace"] == NS
    reads = api.calls("GET", f"{MPIJOBS}/j")
    assert len(reads) == len(script)  # it polled through every scripted state and stopped at the end
    assert {r["auth"] for r in reads} == {f"Bearer {TOKEN}"}  # through the connection's kubeconfig


def test_failed_event_carries_the_operators_reason(api):
    api.add_job("j", [RUNNING, FAILED])
    event = first_event(trigger_for("j"))
    assert event["reason"] == "BackoffLimitExceeded/Error"
    assert event["message"] == "Job has reached the specified backoff limit"


def test_deleted_job_is_an_error(api):
    api.add_job("j", [RUNNING])
    trigger = trigger_for("j")
    api.jobs.pop("j")
    event = first_event(trigger)
    assert event["status"] == "error" and event["reason"] == "NotFound"


def test_forbidden_read_is_an_error_event_not_a_crash(api):
    event = first_event(
        MPIJobTrigger(name="j", namespace="kube-system", kubernetes_conn_id=CONN_ID, poll_interval=0.01)
    )
    assert event["status"] == "error" and event["reason"] == "ApiError403" and "Forbidden" in event["message"]


def test_job_that_never_starts_times_out(api):
    api.add_job("j", [CREATED])
    event = first_event(trigger_for("j", startup_deadline=time.time() + 0.3))
    assert event["status"] == "timeout" and event["reason"] == "StartupTimeout" and event["phase"] == "Created"
    assert len(api.calls("GET", f"{MPIJOBS}/j")) > 1  # it kept polling until the deadline, not the first look


def test_startup_deadline_does_not_cut_a_running_job(api):
    api.add_job("j", [RUNNING] * 8 + [SUCCEEDED])
    event = first_event(trigger_for("j", startup_deadline=time.time() - 1))
    assert event["status"] == "success"


def test_execution_deadline_stops_waiting(api):
    api.add_job("j", [RUNNING])
    event = first_event(trigger_for("j", execution_deadline=time.time() + 0.3))
    assert event["status"] == "timeout" and event["reason"] == "ExecutionTimeout" and event["phase"] == "Running"


def test_trigger_on_kill_deletes_the_job(api):
    api.add_job("j", [RUNNING])
    asyncio.run(trigger_for("j").on_kill())
    assert "j" not in api.jobs
    (delete,) = api.calls("DELETE")
    assert delete["query"]["propagationPolicy"] == ["Background"]


def test_trigger_serializes_to_its_own_arguments():
    trigger = trigger_for("j", startup_deadline=123.0, execution_deadline=456.0)
    classpath, kwargs = trigger.serialize()
    assert classpath == "eksml.kubernetes.triggers.MPIJobTrigger"
    assert MPIJobTrigger(**kwargs).serialize() == (classpath, kwargs)


# --- the operator ---------------------------------------------------------------------------------


def _context(try_number: int = 1):
    """The parts of a task context the operator reads (and the XComs it pushes: ``ti.xcom``);
    the task runner supplies the real one."""
    xcom: dict = {}
    ti = SimpleNamespace(
        xcom=xcom,
        xcom_push=lambda key, value: xcom.__setitem__(key, value),
        dag_id="fashion_mnist_training",
        task_id="train_mxnet",
        run_id="manual__2026-01-01T00:00:00+00:00",
        map_index=-1,
        try_number=try_number,
        start_date=datetime.now(timezone.utc),
    )
    return {"ti": ti}


def _operator(**kwargs) -> MPIJobOperator:
    kwargs.setdefault("deferrable", True)
    return MPIJobOperator(task_id="train_mxnet", spec=SPEC.to_dict(), settings=SETTINGS, poll_interval=0.01, **kwargs)


def test_operator_creates_the_rendered_job_and_defers(api):
    from airflow.sdk.exceptions import TaskDeferred

    context = _context()
    op = _operator(execution_timeout=timedelta(hours=2))
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    name = job_name(SPEC.name, MPIJobOperator.try_key(context))
    (create,) = api.calls("POST", MPIJOBS)
    assert create["auth"] == f"Bearer {TOKEN}"
    expected = render_mpijob(
        SPEC, SETTINGS, name, run_policy=op.effective_run_policy(), labels=MPIJobOperator.task_labels(context)
    )
    assert create["body"] == expected
    assert create["body"]["spec"]["runPolicy"]["activeDeadlineSeconds"] == 7200
    run_label = create["body"]["metadata"]["labels"]["eksml/run-id"]  # a run id is no valid label value as is
    assert run_label.startswith("manual__2026-01-01T")
    assert re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", run_label)

    trigger = deferred.value.trigger
    assert isinstance(trigger, MPIJobTrigger) and deferred.value.method_name == "execute_complete"
    assert (trigger.name, trigger.namespace, trigger.kubernetes_conn_id) == (name, NS, CONN_ID)
    assert trigger.connection_extras["kube_config_path"]  # resolved in the worker, as KPO does
    assert trigger.startup_deadline > time.time() + 25 * 60
    assert timedelta(hours=2) < deferred.value.timeout < timedelta(hours=2, minutes=5)


def test_a_retry_creates_a_new_job_and_a_rerun_of_the_same_try_reattaches(api):
    from airflow.sdk.exceptions import TaskDeferred

    names = []
    for try_number in (1, 2, 2):
        with pytest.raises(TaskDeferred) as deferred:
            _operator().execute(_context(try_number))
        names.append(deferred.value.trigger.name)
    assert names[0] != names[1] == names[2]
    assert sorted(api.jobs) == sorted(set(names))  # the third call hit 409 and waits on the existing job


def test_bad_spec_fails_before_any_api_call(api):
    op = MPIJobOperator(task_id="t", spec={**SPEC.to_dict(), "slots_per_replica": 3}, settings=SETTINGS)
    with pytest.raises(ValueError, match="GPU.*slot"):
        op.execute(_context())
    assert api.requests == []


def test_success_copies_every_launcher_attempt_into_the_task_log(api, capsys):
    api.add_job("j", [SUCCEEDED])
    api.add_pod(
        "j-launcher-2nd",
        "j",
        "launcher",
        "2026-01-01T00:05:00Z",
        "Succeeded",
        "attempt two: resumed at epoch 2\ndone\n",
    )
    api.add_pod("j-launcher-1st", "j", "launcher", "2026-01-01T00:01:00Z", "Failed", "attempt one: ssh refused\n")
    api.add_pod("j-worker-0", "j", "worker", "2026-01-01T00:00:00Z", "Running", "sshd noise\n")
    result = _operator().execute_complete(
        _context(),
        {
            "status": "success",
            "name": "j",
            "namespace": NS,
            "phase": "Succeeded",
            "reason": "MPIJobSucceeded",
            "message": "",
        },
    )
    assert result == {"name": "j", "namespace": NS, "phase": "Succeeded"}
    out = capsys.readouterr().out
    assert out.index("attempt one: ssh refused") < out.index("attempt two: resumed at epoch 2")
    assert "sshd noise" not in out
    log_reads = [r for r in api.calls("GET", f"/api/v1/namespaces/{NS}/pods/") if r["path"].endswith("/log")]
    assert [r["query"]["container"] for r in log_reads] == [["mpi-launcher"], ["mpi-launcher"]]
    assert "j" in api.jobs  # a finished job is left to its TTL


def test_failure_fails_the_task_with_the_launchers_last_lines(api):
    from airflow.sdk.exceptions import AirflowException

    api.add_job("j", [FAILED])
    api.add_pod(
        "j-launcher-x",
        "j",
        "launcher",
        "2026-01-01T00:01:00Z",
        "Failed",
        "".join(f"line {i}\n" for i in range(1, 101)) + "RuntimeError: NCCL error\n",
    )
    event = {
        "status": "failed",
        "name": "j",
        "namespace": NS,
        "phase": "Failed",
        "reason": "BackoffLimitExceeded/Error",
        "message": "Job has reached the specified backoff limit",
    }
    with pytest.raises(AirflowException) as failure:
        _operator(log_tail_lines=10).execute_complete(_context(), event)
    message = str(failure.value)
    assert "BackoffLimitExceeded/Error" in message and "RuntimeError: NCCL error" in message
    assert "line 100" in message and "line 91" not in message  # only the last 10 lines
    assert api.calls("DELETE") == []


@pytest.mark.parametrize(("first_exit", "last_exit", "for_good"), [(1, 2, True), (2, 1, False), (None, 137, False)])
def test_a_launcher_that_exited_2_fails_the_task_without_retry(api, first_exit, last_exit, for_good):
    """The entrypoint's bad-input status, as the newest launcher pod's container reports it, fails
    the task for good; any other status (or an older attempt's 2) leaves Airflow's retries."""
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    api.add_job("j", [FAILED])
    api.add_pod("j-launcher-1st", "j", "launcher", "2026-01-01T00:01:00Z", "Failed", "first\n", first_exit)
    api.add_pod(
        "j-launcher-2nd",
        "j",
        "launcher",
        "2026-01-01T00:05:00Z",
        "Failed",
        "ValueError: labels outside 0..9\n",
        last_exit,
    )
    event = {
        "status": "failed",
        "name": "j",
        "namespace": NS,
        "phase": "Failed",
        "reason": "BackoffLimitExceeded/Error",
        "message": "Job has reached the specified backoff limit",
    }
    with pytest.raises(AirflowException) as failure:
        _operator().execute_complete(_context(), event)
    assert isinstance(failure.value, AirflowFailException) is for_good
    assert "labels outside 0..9" in str(failure.value) and "BackoffLimitExceeded/Error" in str(failure.value)
    assert ("not retried" in str(failure.value)) is for_good


def test_a_failed_condition_quoting_exit_code_2_fails_without_retry(api):
    """No launcher pod left to read (garbage-collected): the Failed condition's message, as the
    MPI operator copies it from the launcher Job's pod failure policy, still names the status."""
    from airflow.sdk.exceptions import AirflowFailException

    api.add_job("j", [FAILED])
    event = {
        "status": "failed",
        "name": "j",
        "namespace": NS,
        "phase": "Failed",
        "reason": "PodFailurePolicy",
        "message": f"Container mpi-launcher for pod {NS}/j-launcher-x failed with exit code 2 "
        "matching FailJob rule at index 0",
    }
    with pytest.raises(AirflowFailException, match="PodFailurePolicy"):
        _operator().execute_complete(_context(), event)


@pytest.mark.parametrize("status", ["timeout", "error"])
def test_timeout_deletes_the_job_and_fails(api, status):
    from airflow.sdk.exceptions import AirflowException

    api.add_job("j", [RUNNING])
    with pytest.raises(AirflowException, match="ExecutionTimeout"):
        _operator().execute_complete(
            _context(),
            {
                "status": status,
                "name": "j",
                "namespace": NS,
                "phase": "Running",
                "reason": "ExecutionTimeout",
                "message": "still Running",
            },
        )
    assert "j" not in api.jobs


def test_api_errors_during_clean_up_do_not_hide_the_jobs_failure(api):
    from airflow.sdk.exceptions import AirflowException

    event = {
        "status": "error",
        "name": "j",
        "namespace": "kube-system",
        "phase": "Running",
        "reason": "ApiError403",
        "message": "MPIJob kube-system/j cannot be read: 403 Forbidden",
    }
    with pytest.raises(AirflowException, match="ApiError403.*403 Forbidden"):
        _operator().execute_complete(_context(), event)
    assert [r["method"] for r in api.requests] == ["GET", "DELETE"]  # tried the log, tried the clean-up


def test_on_kill_deletes_the_job_it_created(api):
    from airflow.sdk.exceptions import TaskDeferred

    op = _operator()
    with pytest.raises(TaskDeferred):
        op.execute(_context())
    (created,) = api.jobs
    op.on_kill()
    assert api.jobs == {}
    (delete,) = api.calls("DELETE")
    assert delete["path"] == f"{MPIJOBS}/{created}"


# --- not deferrable: the same wait in the worker, through the sync hook ----------------------------


def test_not_deferrable_waits_in_the_worker_and_reports(api, capsys):
    api.next_script = [PENDING, CREATED, RUNNING, RESTARTING, RUNNING, SUCCEEDED]
    api.next_launcher_log = "rank 0: test accuracy 0.88\n"
    result = _operator(deferrable=False).execute(_context())
    (create,) = api.calls("POST", MPIJOBS)
    name = create["body"]["metadata"]["name"]
    assert result == {"name": name, "namespace": NS, "phase": "Succeeded"}
    reads = api.calls("GET", f"{MPIJOBS}/{name}")
    assert len(reads) == 6 and {r["auth"] for r in reads} == {f"Bearer {TOKEN}"}
    assert "rank 0: test accuracy 0.88" in capsys.readouterr().out
    assert name in api.jobs  # a finished job is left to its TTL, as after a deferral


def test_not_deferrable_startup_timeout_deletes_the_job_and_fails(api):
    from airflow.sdk.exceptions import AirflowException

    api.next_script = [CREATED]
    with pytest.raises(AirflowException, match="StartupTimeout"):
        _operator(deferrable=False, startup_timeout=0.2).execute(_context())
    assert api.jobs == {}
    (delete,) = api.calls("DELETE")
    assert delete["query"]["propagationPolicy"] == ["Background"]


def test_not_deferrable_failed_launcher_exit_2_is_not_retried(api):
    from airflow.sdk.exceptions import AirflowFailException

    api.next_script = [RUNNING, FAILED]
    api.next_launcher_log, api.next_launcher_exit = "ValueError: labels outside 0..9\n", 2
    with pytest.raises(AirflowFailException, match="labels outside 0..9"):
        _operator(deferrable=False).execute(_context())


def test_not_deferrable_task_stopped_while_waiting_deletes_the_job(api, monkeypatch):
    """Airflow's execution_timeout (or a stop) interrupts the wait in the worker: the job goes too."""
    from airflow.sdk.exceptions import AirflowTaskTimeout

    from eksml.kubernetes.hooks import MPIJobHook

    api.next_script = [RUNNING]

    def interrupted(self, *args, **kwargs):
        raise AirflowTaskTimeout("Timeout, PID: 1")

    monkeypatch.setattr(MPIJobHook, "wait_for_mpijob", interrupted)
    with pytest.raises(AirflowTaskTimeout):
        _operator(deferrable=False).execute(_context())
    assert api.jobs == {}


# --- local profile: horovodrun over Gloo in the image's virtualenv ---------------------------------

HOROVOD_VENV = Path(__file__).resolve().parents[2] / ".venvs" / "mxnet-horovod"
PROBE = """
import os, sys
import horovod.mxnet as hvd
hvd.init()
out = sys.argv[sys.argv.index("--out") + 1]
with open(os.path.join(out, f"rank-{hvd.rank()}"), "w") as f:
    f.write(f"{hvd.rank()}/{hvd.size()} {os.environ['PROBE_MODE']}")
print(f"rank {hvd.rank()} of {hvd.size()} up", flush=True)
"""


@pytest.mark.skipif(
    not (HOROVOD_VENV / "bin" / "horovodrun").exists(),
    reason=f"{HOROVOD_VENV} not built: bash images/build-local-venv.sh mxnet-horovod",
)
def test_local_profile_runs_horovodrun_with_one_process_per_slot(tmp_path, api):
    (tmp_path / "venvs").mkdir()
    (tmp_path / "venvs" / "hvdprobe").symlink_to(HOROVOD_VENV)
    (tmp_path / "images" / "hvdprobe").mkdir(parents=True)
    (tmp_path / "images" / "hvdprobe" / "probe.py").write_text(PROBE)
    (tmp_path / "out").mkdir()
    local = Settings(
        profile="local",
        venvs_dir=str(tmp_path / "venvs"),
        images_dir=str(tmp_path / "images"),
        store_uri=(tmp_path / "store").as_uri(),
    )
    spec = WorkloadSpec(
        name="probe",
        image="hvdprobe",
        script="probe.py",
        args=("--out", str(tmp_path / "out")),
        env={"PROBE_MODE": "from-spec"},
        replicas=2,
        slots_per_replica=1,
        distributed=True,
    )
    assert MPIJobOperator(task_id="train_mxnet", spec=spec.to_dict(), settings=local).execute(_context()) is None
    ranks = {p.name: p.read_text() for p in (tmp_path / "out").iterdir()}
    assert ranks == {"rank-0": "0/2 from-spec", "rank-1": "1/2 from-spec"}
    assert api.requests == []  # nothing went to Kubernetes


# --- the single-pod operator submits the pod render_training_pod shows -----------------------------


def test_pod_operator_submits_the_rendered_pod_and_defers(api):
    from airflow.sdk.exceptions import TaskDeferred

    from eksml.kubernetes.operators import GpuTrainingPodOperator, render_training_pod

    tf = training_spec(
        framework="tensorflow",
        data_uri="s3://eksml-bucket/store/data/x",
        model_uri="s3://b/m",
        checkpoint_uri="s3://b/c",
        epochs=1,
        batch_size=32,
        learning_rate=0.01,
        gpus=1,
    )
    pushed = {}
    context = _context()
    context["ti"].xcom_push = lambda key, value: pushed.__setitem__(key, value)
    context.update(run_id=context["ti"].run_id, dag=SimpleNamespace(dag_id=context["ti"].dag_id))
    op = GpuTrainingPodOperator(task_id="train_tensorflow", spec=tf.to_dict(), settings=SETTINGS, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    (create,) = api.calls("POST", f"/api/v1/namespaces/{NS}/pods")
    submitted = create["body"]
    assert create["auth"] == f"Bearer {TOKEN}" and pushed["pod_name"] == submitted["metadata"]["name"]
    assert submitted["metadata"]["name"].startswith("train-tensorflow-")  # a run adds a random suffix
    rendered = render_training_pod(tf, SETTINGS)
    assert submitted["spec"] == rendered["spec"]
    assert rendered["metadata"]["labels"].items() <= submitted["metadata"]["labels"].items()
    assert submitted["metadata"]["labels"]["kubernetes_pod_operator"] == "True"  # KPO's own labels on top
    assert type(deferred.value.trigger).__name__ == "KubernetesPodTrigger"


# --- the whole deferral through Airflow ------------------------------------------------------------

DAG_FILE = """
from airflow.sdk import DAG, task
from eksml.kubernetes.operators import MPIJobOperator
from eksml.settings import Settings

with DAG("mpijob_operator_it", schedule=None, render_template_as_native_obj=True, catchup=False) as dag:
    @task(task_id="plan")
    def plan():
        return {spec!r}

    plan() >> MPIJobOperator(task_id="train_mxnet", spec="{{{{ ti.xcom_pull(task_ids='plan') }}}}",
                             settings=Settings(**{settings!r}), poll_interval=0.01, deferrable=True)
"""


def test_dag_run_creates_defers_and_reports(api, airflow_db, tmp_path, monkeypatch, capsys):
    """dag.test(): spec from XCom (native rendering), create, defer, trigger in line, resume."""
    import importlib.util

    settings = {"profile": "aws", "store_uri": SETTINGS.store_uri, "namespace": NS, "kubernetes_conn_id": CONN_ID}
    (tmp_path / "mpijob_dag.py").write_text(DAG_FILE.format(spec=SPEC.to_dict(), settings=settings))
    monkeypatch.setenv(
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
        json.dumps(
            [
                {
                    "name": "mpijob-it",
                    "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                    "kwargs": {"path": str(tmp_path), "refresh_interval": 0},
                }
            ]
        ),
    )
    module_spec = importlib.util.spec_from_file_location("mpijob_dag", tmp_path / "mpijob_dag.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)

    api.next_script = [PENDING, CREATED, RUNNING, RUNNING, SUCCEEDED]
    api.next_launcher_log = "rank 0 shard 0-29999\nrank 1 shard 30000-59999\ntest accuracy 0.90\n"
    run = module.dag.test()
    out = capsys.readouterr().out
    assert run.state == "success", out[-3000:]
    (create,) = api.calls("POST", MPIJOBS)
    assert create["body"]["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"] == 2
    name = create["body"]["metadata"]["name"]
    assert len(api.calls("GET", f"{MPIJOBS}/{name}")) == 5  # the trigger polled to Succeeded
    assert "rank 1 shard 30000-59999" in out  # the launcher log reached the task log
