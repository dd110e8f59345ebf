"""The local profile's model server: one process on a stable loopback port, replaced safely.

Design: the stable port (settings.inference_port, 8080 by default) is served by the real
server process, the same program the pod runs; there is no proxy in front of it. A deploy
first starts the new version on a free temporary port and smoke-tests it there while the old
version keeps serving. Only a version that passed replaces the old one: the old process is
stopped and the new version is started on the stable port and checked again. If that second
start fails, the old version is started again, so a failed deploy leaves the old version
serving. The price is a gap of one model load (seconds) on the stable port during a
successful swap, acceptable for a workstation and far simpler than a proxy that must itself
be kept alive; the aws profile has no gap (a RollingUpdate with maxUnavailable 0).

Each server runs under a supervisor (``supervisor.py``, its own process group) that restarts
it with backoff when it dies, records the restarts and rotates its log, as Kubernetes does for
the pod. State: ``<serving dir>/state.json`` (supervisor pid, port, version, model URI, log
file, supervisor state file), replaced atomically; one deploy at a time (a file lock); server
logs and supervisor states in ``<serving dir>/logs/``. The serving dir follows the store
(``Settings.serving_state_dir``; ``.local/serving`` for the default store).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from eksml.errors import ServiceError
from eksml.local.runner import LocalRunner
from eksml.serving.manifests import HTTP_PORT, IMAGE, SCRIPT, serving_spec
from eksml.serving.smoke import SmokeTestError, http_transport, smoke_test
from eksml.settings import Settings
from eksml.specs import flag
from eksml.storage import version_at, workload_env

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
SUPERVISOR = Path(__file__).with_name("supervisor.py")
STATE_FILE = "state.json"


class ServingError(ServiceError):
    """The local server could not be started, checked or replaced; the message says why."""


@dataclass(frozen=True)
class ServerProcess:
    """A running local server, as recorded in the state file (``pid`` is its supervisor's)."""

    pid: int
    port: int
    version: str
    model_uri: str
    model_name: str
    log_path: str
    started_at: str
    supervisor_state: str = ""

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


def _port_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now (with SO_REUSEADDR, as uvicorn binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _alive(pid: int) -> bool:
    """Running (not a zombie awaiting its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False


def _is_our_server(pid: int, port: int) -> bool:
    """Whether ``pid`` is an inference server on ``port`` (never signal a recycled pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    text = [a.decode(errors="replace") for a in argv]
    port_flag = flag(HTTP_PORT)
    return (
        any(a.endswith(f"/{SCRIPT}") for a in text)
        and port_flag in text
        and text[text.index(port_flag) + 1 : text.index(port_flag) + 2] == [str(port)]
    )


def _tail(path: str, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class LocalServing:
    """Start, check, stop and replace the local server of one model."""

    #: Children started by this Python process, reaped when stopped (no zombies in tests).
    _children: dict[int, subprocess.Popen] = {}

    def __init__(
        self, settings: Settings, state_dir: str | os.PathLike | None = None, ready_timeout: float = 300.0
    ) -> None:
        self.settings = settings
        self.state_dir = Path(state_dir) if state_dir else settings.serving_state_dir
        self.ready_timeout = ready_timeout
        self.runner = LocalRunner(settings, log)

    # --- state ---------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.state_dir / STATE_FILE

    def current(self) -> ServerProcess | None:
        """The recorded server if it still runs, else None."""
        try:
            state = ServerProcess(**json.loads(self.state_path.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        if _alive(state.pid) and _is_our_server(state.pid, state.port):
            return state
        return None

    def _record(self, server: ServerProcess | None) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if server is None:
            self.state_path.unlink(missing_ok=True)
            return
        tmp = self.state_dir / f".{STATE_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(asdict(server), indent=2))
        os.replace(tmp, self.state_path)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One deploy at a time on this machine."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / ".deploy.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- processes -----------------------------------------------------------------------
    def start(self, model_uri: str, version: str, port: int) -> ServerProcess:
        """Start the server of ``version`` on ``port`` and wait until its model is ready."""
        spec = serving_spec(model_uri, version, self.settings.model_name, host=self.settings.inference_host, port=port)
        self.runner.check_ready(spec)
        if not _port_free(port):
            raise ServingError(f"port {LOOPBACK}:{port} is taken by another process")
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{version}-{port}.log"
        supervisor_state = logs / f"{version}-{port}.supervisor.json"
        supervisor_state.unlink(missing_ok=True)
        env = self.runner.environment(spec, workload_env(self.settings))
        argv = [
            sys.executable,
            str(SUPERVISOR),
            "--state",
            str(supervisor_state),
            "--log",
            str(log_path),
            "--",
            *self.runner.command(spec),
        ]
        with open(logs / "supervisor.err", "ab") as err:
            proc = subprocess.Popen(
                argv,
                env=env,
                stdout=err,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=Path(self.settings.images_dir) / IMAGE,
                start_new_session=True,
            )  # outlives the task that started it
        self._children[proc.pid] = proc
        server = ServerProcess(
            pid=proc.pid,
            port=port,
            version=version,
            model_uri=model_uri,
            model_name=self.settings.model_name,
            log_path=str(log_path),
            started_at=datetime.now(timezone.utc).isoformat(),
            supervisor_state=str(supervisor_state),
        )
        log.info("started server of %s on port %d (pid %d, log %s)", version, port, proc.pid, log_path)
        try:
            self.wait_ready(server, proc.poll)
        except BaseException:
            self.stop(server)
            raise
        return server

    def wait_ready(self, server: ServerProcess, poll: Callable[[], int | None]) -> None:
        """Until ``/v1/models/<name>`` answers 200; fail at once when the server exits."""
        call = http_transport(server.url, timeout=5)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            code = poll()
            exits = supervision(server).get("exits") or []
            if code is not None or exits:  # a server that dies before it is ready is not retried
                status = exits[-1]["status"] if exits else code
                raise ServingError(
                    f"server of {server.version} exited with status {status} before it was "
                    f"ready; last log lines:\n{_tail(server.log_path)}"
                )
            status, _ = call("GET", f"/v1/models/{server.model_name}", None)
            if status == 200:
                return
            time.sleep(0.5)
        raise ServingError(
            f"server of {server.version} not ready after {self.ready_timeout:.0f} s; "
            f"last log lines:\n{_tail(server.log_path)}"
        )

    def stop(self, server: ServerProcess, timeout: float = 30.0) -> None:
        """SIGTERM to the supervisor and server (the server drains in-flight requests), SIGKILL after ``timeout``."""
        child = self._children.pop(server.pid, None)
        if not _alive(server.pid):
            if child:
                child.wait()
            return
        if child is None and not _is_our_server(server.pid, server.port):
            log.warning("pid %d is no longer the server on port %d: not signalled", server.pid, server.port)
            return
        os.killpg(server.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(server.pid) and time.monotonic() < deadline:
            if child and child.poll() is not None:
                break
            time.sleep(0.1)
        if _alive(server.pid):
            os.killpg(server.pid, signal.SIGKILL)
        if child:
            child.wait()
        log.info("stopped server of %s (pid %d)", server.version, server.pid)

    # --- deploy --------------------------------------------------------------------------
    def deploy(
        self, model_uri: str, version: str, port: int | None = None, *, check: Callable[[ServerProcess], dict[str, Any]]
    ) -> dict[str, Any]:
        """Serve ``version`` on the stable port only after ``check`` (a smoke test) passed on it."""
        port = port or self.settings.inference_port
        with self.lock():
            old = self.current()
            if old is None and not _port_free(port):
                raise ServingError(
                    f"stable port {LOOPBACK}:{port} is taken by a process this project did "
                    "not start; stop it or choose another inference_port"
                )
            if old is not None and old.port != port:
                raise ServingError(
                    f"the server of {old.version} runs on port {old.port}, not {port}: "
                    "stop it first or deploy to its port"
                )
            if old and old.version == version and old.model_uri == model_uri:
                smoke = self._checked(old, check)
                return {"version": version, "url": old.url, "changed": False, "previous": version, "smoke": smoke}
            if old is None:
                new = self.start(model_uri, version, port)
                smoke = self._checked(new, check, stop_on_failure=True)
                self._record(new)
                return {
                    "version": version,
                    "url": new.url,
                    "changed": True,
                    "previous": None,
                    "pid": new.pid,
                    "smoke": smoke,
                }
            # An old version serves: prove the new one on a temporary port first.
            trial = self.start(model_uri, version, _free_port())
            try:
                self._checked(trial, check)
            finally:
                self.stop(trial)
            self.stop(old)
            try:
                new = self.start(model_uri, version, port)
                smoke = self._checked(new, check, stop_on_failure=True)
            except (ServingError, SmokeTestError) as exc:
                try:
                    self._record(self.start(old.model_uri, old.version, port))
                except ServingError as again:
                    self._record(None)
                    raise ServingError(
                        f"{version} failed on port {port} ({exc}), and restarting "
                        f"{old.version} failed too ({again}): nothing serves"
                    ) from exc
                raise ServingError(
                    f"{version} passed on a temporary port but failed on port {port} ({exc}); {old.version} restored"
                ) from exc
            self._record(new)
            return {
                "version": version,
                "url": new.url,
                "changed": True,
                "previous": old.version,
                "pid": new.pid,
                "smoke": smoke,
            }

    def _checked(
        self, server: ServerProcess, check: Callable[[ServerProcess], dict[str, Any]], stop_on_failure: bool = False
    ) -> dict[str, Any]:
        try:
            return check(server)
        except SmokeTestError:
            if stop_on_failure:
                self.stop(server)
            raise


def supervision(server: ServerProcess) -> dict[str, Any]:
    """The supervisor's record of ``server``: server pid, restarts, last exits ({} if none yet)."""
    try:
        return json.loads(Path(server.supervisor_state).read_text()) if server.supervisor_state else {}
    except (OSError, ValueError):
        return {}


def deploy_local(
    model_uri: str,
    version: str,
    port: int | None = None,
    *,
    settings: Settings | None = None,
    data_uri: str | None = None,
    smoke_images: int = 32,
    min_accuracy: float = 0.5,
    state_dir: str | os.PathLike | None = None,
    expectations: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Serve ``version`` locally on the stable port if it passes its smoke test, else raise.

    A failed smoke test (or a version that does not load) raises with the reason and leaves the
    previous version serving. ``expectations`` (:meth:`ModelVersion.expectations`) spares a
    caller that read the version's files already a second read.
    """
    from eksml.serving.smoke import load_test_images
    from eksml.settings import resolve_settings

    settings = settings or resolve_settings()
    if model_uri.startswith("/"):
        model_uri = "file://" + model_uri
    try:  # fail before starting anything
        expectations = expectations or version_at(model_uri, settings).expectations()
    except FileNotFoundError as exc:
        raise ServingError(str(exc)) from None
    images, labels = load_test_images(data_uri or settings.source_data_uri, smoke_images, settings)

    def check(server: ServerProcess) -> dict[str, Any]:
        return smoke_test(server.url, server.model_name, images, labels, min_accuracy=min_accuracy, **expectations)

    return LocalServing(settings, state_dir).deploy(model_uri, version, port, check=check)


def stop_local(settings: Settings | None = None, state_dir: str | os.PathLike | None = None) -> str | None:
    """Stop the local server, if one runs; return the version it served."""
    from eksml.settings import load_settings

    serving = LocalServing(settings or load_settings(), state_dir)
    with serving.lock():
        server = serving.current()
        if server is None:
            return None
        serving.stop(server)
        serving._record(None)
        return server.version
