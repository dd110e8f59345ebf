"""The eksctl hook: the one way this package runs eksctl, in a worker or in the triggerer.

It locates the binary and checks its version, builds the child environment from the Airflow
AWS connection, masks credentials in every output line, and runs commands synchronously
(short ``-o json`` queries from a worker) or asynchronously (long create/delete runs
streamed from the triggerer). Operators and triggers go through :class:`EksctlHook`.

eksctl is a CLI, not an API with a Python client, so there is no provider hook to subclass;
:class:`EksctlHook` follows the provider shape (a ``BaseHook`` named by its connection) and
builds its credentials with the Amazon provider's ``AwsBaseHook``.

Every command is an argv list handed to the OS directly, never a shell string, so no
cluster name or parameter can inject a command. eksctl reads credentials only from the
standard AWS environment variables and files, so the connection's (possibly assumed-role,
short-lived) credentials are handed over as ``AWS_*`` variables of the child process; they
never touch disk, argv or XCom. Every line that is logged or kept as a tail passes through
a :class:`Redactor` first; only the stdout of a short query (its JSON data) is handed back as is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook

from eksml.cluster.config import NodegroupState
from eksml.errors import ServiceError

#: 0.202.0 is the first release that supports EKS 1.32 (eksctl-io/eksctl#8162) and has
#: access entries, AL2023 default AMIs and ``--install-nvidia-plugin``.
MIN_VERSION: tuple[int, int, int] = (0, 202, 0)
ENV_BINARY = "EKSML_EKSCTL"
_VERSION_RE = re.compile(r"(\d+)\.(\d+)\.(\d+)")
_NOT_FOUND_MARKERS = ("ResourceNotFoundException", "No cluster found")


class EksctlError(ServiceError):
    """eksctl is unusable or a command failed."""


class EksctlNotFoundError(EksctlError):
    pass


class EksctlVersionError(EksctlError):
    pass


def find_eksctl(path: str | None = None) -> str:
    """Absolute path of the eksctl binary: ``path``, ``$EKSML_EKSCTL`` or ``PATH``."""
    candidate = path or os.environ.get(ENV_BINARY) or "eksctl"
    found = shutil.which(candidate)
    if not found:
        raise EksctlNotFoundError(
            f"eksctl binary not found ({candidate!r}); install eksctl >= {'.'.join(map(str, MIN_VERSION))} "
            f"(https://eksctl.io/installation/) on the Airflow workers and triggerer, "
            f"or set {ENV_BINARY} to its path"
        )
    return found


def parse_version(text: str) -> tuple[int, int, int]:
    """First ``X.Y.Z`` in ``eksctl version`` output (plain or JSON)."""
    match = _VERSION_RE.search(text or "")
    if not match:
        raise EksctlVersionError(f"cannot read an eksctl version from {text.strip()[:200]!r}")
    return int(match[1]), int(match[2]), int(match[3])


def require_version(text: str, minimum: tuple[int, int, int] = MIN_VERSION) -> tuple[int, int, int]:
    version = parse_version(text)
    if version < minimum:
        raise EksctlVersionError(
            f"eksctl {'.'.join(map(str, version))} is too old; the pipeline needs >= {'.'.join(map(str, minimum))}"
        )
    return version


# --- redaction ---------------------------------------------------------------------------
MASK = "***"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), MASK),
    (re.compile(r"k8s-aws-v1\.[A-Za-z0-9_\-]+"), "k8s-aws-v1." + MASK),
    (re.compile(r"(?i)(authorization:\s*bearer\s+)\S+"), r"\1" + MASK),
    (
        re.compile(
            r"(?i)((?:aws_)?(?:secret_access_key|session_token|secret|password|token)[\"']?\s*[:=]\s*[\"']?)"
            r"([^\s\"',}]+)"
        ),
        r"\1" + MASK,
    ),
    (re.compile(r"(?i)(X-Amz-(?:Security-Token|Signature|Credential)=)[^&\s]+"), r"\1" + MASK),
)


class Redactor:
    """Callable that masks ``secrets`` (exact values) and secret-shaped text in a line."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # Longest first, so a value containing another is masked whole; very short values
        # would mask ordinary words and are never real credentials.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


# --- environment from the AWS connection -------------------------------------------------
#: Non-AWS variables eksctl needs (HOME for its cache, proxies for egress).
_PASSTHROUGH = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
)


class CredentialsError(ServiceError):
    """No usable AWS credentials for eksctl."""


def eksctl_environment(
    aws_conn_id: str | None, region: str, base: Mapping[str, str] | None = None
) -> tuple[dict[str, str], list[str]]:
    """Child environment for eksctl and the secret values a redactor must mask."""
    source = os.environ if base is None else base
    env = {k: source[k] for k in _PASSTHROUGH if k in source}
    secrets: list[str] = []
    if aws_conn_id is None:
        env.update({k: v for k, v in source.items() if k.startswith("AWS_")})
        secrets += [env[k] for k in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN") if env.get(k)]
    else:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        session = AwsBaseHook(aws_conn_id=aws_conn_id, region_name=region, client_type="sts").get_session()
        credentials = session.get_credentials()
        if credentials is None:
            raise CredentialsError(f"Airflow connection {aws_conn_id!r} yields no AWS credentials")
        frozen = credentials.get_frozen_credentials()
        env["AWS_ACCESS_KEY_ID"] = frozen.access_key
        env["AWS_SECRET_ACCESS_KEY"] = frozen.secret_key
        secrets.append(frozen.secret_key)
        if frozen.token:
            env["AWS_SESSION_TOKEN"] = frozen.token
            secrets.append(frozen.token)
    env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = region
    env["AWS_STS_REGIONAL_ENDPOINTS"] = "regional"
    return env, secrets


# --- processes ---------------------------------------------------------------------------
TAIL_LINES = 40


@dataclass
class RunResult:
    """Exit status and the (redacted) output of a finished command."""

    returncode: int
    stdout: str = ""
    tail: list[str] = field(default_factory=list)
    timed_out: bool = False


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def run_captured(
    argv: Sequence[str], *, env: Mapping[str, str], redact: Callable[[str], str], timeout: float = 120
) -> RunResult:
    """Short command whose stdout is data (``-o json``); stderr is kept as the tail."""
    try:
        proc = subprocess.run(list(argv), env=dict(env), capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return RunResult(returncode=-1, tail=[f"{argv[0]} did not finish within {timeout:.0f}s"], timed_out=True)
    tail = [redact(line) for line in proc.stderr.splitlines()[-TAIL_LINES:]]
    return RunResult(returncode=proc.returncode, stdout=proc.stdout, tail=tail)


async def arun_captured(
    argv: Sequence[str], *, env: Mapping[str, str], redact: Callable[[str], str], timeout: float = 120
) -> RunResult:
    """Async :func:`run_captured`."""
    proc = await asyncio.create_subprocess_exec(
        *argv, env=dict(env), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        _kill_group(proc.pid, signal.SIGKILL)
        await proc.wait()
        return RunResult(returncode=-1, tail=[f"{argv[0]} did not finish within {timeout:.0f}s"], timed_out=True)
    except asyncio.CancelledError:
        _kill_group(proc.pid, signal.SIGKILL)
        raise
    tail = [redact(line) for line in err.decode(errors="replace").splitlines()[-TAIL_LINES:]]
    return RunResult(returncode=proc.returncode or 0, stdout=out.decode(errors="replace"), tail=tail)


async def arun_streaming(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log: Callable[[str], None],
    redact: Callable[[str], str],
    timeout: float,
    on_start: Callable[[int], None] | None = None,
) -> RunResult:
    """Stream stdout+stderr line by line to ``log``; timeout or cancellation ends the process group."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    if on_start:
        on_start(proc.pid)
    tail: deque[str] = deque(maxlen=TAIL_LINES)

    async def _pump() -> int:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = redact(raw.decode(errors="replace").rstrip("\n"))
            tail.append(line)
            log(line)
        return await proc.wait()

    try:
        returncode = await asyncio.wait_for(_pump(), timeout)
    except TimeoutError:
        _kill_group(proc.pid, signal.SIGTERM)
        await proc.wait()
        return RunResult(returncode=proc.returncode or -1, tail=list(tail), timed_out=True)
    except asyncio.CancelledError:
        # The task was cancelled (task killed, deferral timeout): stop eksctl cleanly.
        _kill_group(proc.pid, signal.SIGTERM)
        raise
    return RunResult(returncode=returncode, tail=list(tail))


# --- argv builders (without the binary; callers prepend it) ---------------------------
def version_args() -> list[str]:
    return ["version"]


def get_cluster_args(name: str, region: str) -> list[str]:
    return ["get", "cluster", "--name", name, "--region", region, "-o", "json"]


def get_nodegroups_args(cluster: str, region: str) -> list[str]:
    return ["get", "nodegroup", "--cluster", cluster, "--region", region, "-o", "json"]


def create_cluster_args(config_file: str) -> list[str]:
    # The pinned device plugin is installed by the add-ons task, so eksctl must not install
    # its own copy; the kubeconfig is built from the EKS API, not written to ~/.kube.
    return ["create", "cluster", "-f", config_file, "--install-nvidia-plugin=false", "--write-kubeconfig=false"]


def create_nodegroups_args(config_file: str) -> list[str]:
    """Creates the config's node groups that are missing; existing ones are skipped by eksctl."""
    return ["create", "nodegroup", "-f", config_file, "--install-nvidia-plugin=false"]


def associate_oidc_args(config_file: str) -> list[str]:
    return ["utils", "associate-iam-oidc-provider", "-f", config_file, "--approve"]


def create_service_accounts_args(config_file: str) -> list[str]:
    """Creates the IRSA roles that are missing; existing ones are skipped by eksctl."""
    return ["create", "iamserviceaccount", "-f", config_file, "--approve"]


def scale_nodegroup_args(
    cluster: str, region: str, nodegroup: str, desired: int, minimum: int, maximum: int
) -> list[str]:
    return [
        "scale",
        "nodegroup",
        "--cluster",
        cluster,
        "--region",
        region,
        "--name",
        nodegroup,
        "--nodes",
        str(desired),
        "--nodes-min",
        str(minimum),
        "--nodes-max",
        str(maximum),
    ]


def delete_cluster_args(name: str, region: str) -> list[str]:
    return ["delete", "cluster", "--name", name, "--region", region, "--wait"]


def write_kubeconfig_args(name: str, region: str, path: str) -> list[str]:
    return ["utils", "write-kubeconfig", "--cluster", name, "--region", region, "--kubeconfig", path]


# --- output parsing --------------------------------------------------------------------
@dataclass(frozen=True)
class ClusterState:
    """What ``eksctl get cluster -o json`` says about one cluster."""

    name: str
    status: str
    version: str | None
    tags: dict[str, str]


def _field(obj: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """eksctl prints SDK structs with Go field names; accept either capitalisation."""
    for key in (name, name[0].lower() + name[1:]):
        if key in obj:
            return obj[key]
    return default


def parse_get_cluster(result: RunResult, name: str) -> ClusterState | None:
    """None when the cluster does not exist; raise on any other failure."""
    if result.returncode != 0:
        text = "\n".join(result.tail)
        if any(marker in text for marker in _NOT_FOUND_MARKERS):
            return None
        raise EksctlError(f"eksctl get cluster {name} failed (exit {result.returncode}): {text[-1500:]}")
    try:
        items = json.loads(result.stdout or "[]")
    except json.JSONDecodeError as exc:
        raise EksctlError(f"eksctl get cluster printed no JSON: {result.stdout[:300]!r}") from exc
    for item in items if isinstance(items, list) else [items]:
        if _field(item, "Name") == name:
            return ClusterState(
                name=name,
                status=str(_field(item, "Status", "UNKNOWN")).upper(),
                version=_field(item, "Version"),
                tags=dict(_field(item, "Tags", {}) or {}),
            )
    return None


def parse_get_nodegroups(result: RunResult, cluster: str) -> dict[str, NodegroupState]:
    if result.returncode != 0:
        raise EksctlError(f"eksctl get nodegroup --cluster {cluster} failed: {' '.join(result.tail)[-1500:]}")
    items = json.loads(result.stdout or "[]") or []
    states = {}
    for item in items:
        name = _field(item, "Name")
        states[name] = NodegroupState(
            name=name,
            status=str(_field(item, "Status", "UNKNOWN")).upper(),
            min_size=int(_field(item, "MinSize", 0)),
            desired=int(_field(item, "DesiredCapacity", 0)),
            max_size=int(_field(item, "MaxSize", 0)),
            instance_types=(instance_type,) if (instance_type := _field(item, "InstanceType")) else (),
        )
    return states


# --- the hook ---------------------------------------------------------------------------
class EksctlHook(BaseHook):
    """eksctl with the credentials of an Airflow AWS connection.

    ``aws_conn_id=None`` passes the worker's own AWS environment (instance role, IRSA,
    profile) through instead. The environment and the redactor are built on first use
    (:meth:`environment` in a worker, :meth:`aenvironment` in the triggerer, where the
    connection lookup and STS call must stay off the event loop).
    """

    conn_name_attr = "aws_conn_id"
    conn_type = "aws"
    hook_name = "eksctl"

    def __init__(
        self,
        region: str,
        aws_conn_id: str | None,
        eksctl_path: str | None = None,
        log_line: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.region = region
        self.aws_conn_id = aws_conn_id
        self.eksctl_path = eksctl_path
        self._log_line = log_line
        self._env: dict[str, str] | None = None
        #: Masks the connection's secrets once the environment is built; patterns before that.
        self.redact = Redactor()

    @cached_property
    def binary(self) -> str:
        return find_eksctl(self.eksctl_path)

    def log_line(self, line: str) -> None:
        (self._log_line or self.log.info)(line)

    def _set_environment(self, env: dict[str, str], secrets: list[str]) -> dict[str, str]:
        self._env, self.redact = env, Redactor(secrets)
        return env

    def environment(self) -> dict[str, str]:
        """The child environment (built once from the connection)."""
        if self._env is None:
            self._set_environment(*eksctl_environment(self.aws_conn_id, self.region))
        assert self._env is not None
        return self._env

    async def aenvironment(self) -> dict[str, str]:
        """:meth:`environment` without blocking the event loop."""
        if self._env is None:
            from asgiref.sync import sync_to_async

            self._set_environment(*await sync_to_async(eksctl_environment)(self.aws_conn_id, self.region))
        assert self._env is not None
        return self._env

    # --- sync (worker) ---------------------------------------------------------------
    def captured(self, args: list[str], timeout: float = 120) -> RunResult:
        env = self.environment()
        self.log_line("$ eksctl " + " ".join(args))
        return run_captured([self.binary, *args], env=env, redact=self.redact, timeout=timeout)

    def check_version(self, minimum: tuple[int, ...] = MIN_VERSION) -> tuple[int, int, int]:
        result = self.captured(version_args(), timeout=60)
        if result.returncode != 0:
            raise EksctlError(f"'eksctl version' failed (exit {result.returncode}): {' '.join(result.tail)}")
        return require_version(result.stdout, minimum)

    def get_cluster(self, name: str, region: str) -> ClusterState | None:
        return parse_get_cluster(self.captured(get_cluster_args(name, region)), name)

    def get_nodegroups(self, cluster: str, region: str) -> dict[str, NodegroupState]:
        return parse_get_nodegroups(self.captured(get_nodegroups_args(cluster, region)), cluster)

    # --- async (triggerer) -------------------------------------------------------------
    async def acaptured(self, args: list[str], timeout: float = 120) -> RunResult:
        env = await self.aenvironment()
        return await arun_captured([self.binary, *args], env=env, redact=self.redact, timeout=timeout)

    async def astreaming(
        self, args: list[str], *, timeout: float, on_start: Callable[[int], None] | None = None
    ) -> RunResult:
        """Run a long command, each (redacted) output line to :meth:`log_line`."""
        env = await self.aenvironment()
        return await arun_streaming(
            [self.binary, *args], env=env, log=self.log_line, redact=self.redact, timeout=timeout, on_start=on_start
        )

    async def acheck_version(self, minimum: tuple[int, ...] = MIN_VERSION) -> tuple[int, int, int]:
        result = await self.acaptured(version_args(), timeout=60)
        return require_version(result.stdout, minimum)

    async def aget_cluster(self, name: str, region: str) -> ClusterState | None:
        return parse_get_cluster(await self.acaptured(get_cluster_args(name, region)), name)
