"""A real Kubernetes control plane as loopback processes, for the ``k8s`` test tier.

Binaries built from pinned upstream sources by ``tools/k8s-testenv/build.sh``: etcd,
kube-apiserver (RBAC and PodSecurity admission on, service-account token signing, client
certificates), kube-controller-manager (deployment, replicaset, job, namespace, serviceaccount
and garbage-collector controllers), kube-scheduler, kwok (simulated nodes and pod lifecycle,
no container runtime) and the Kubeflow MPI operator's controller.

The simulated nodes are the project's own node groups (``train_node_group`` /
``inference_node_group``): the same labels, taints and GPU count per node that eksctl gives
the real ones. What kwok cannot give: no container ever runs, so a pod's outcome comes from
``kwok-stages.yaml`` (Running and Ready once scheduled; a bare or Job-owned pod completes;
image tags ending in ``-exit1`` fail, ``-never-ready`` never become Ready), pod IPs reach
nothing, and container logs are canned files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "tools" / "k8s-testenv" / "build.sh"
STAGES = Path(__file__).with_name("kwok-stages.yaml")
#: Nodes kwok manages carry this annotation (and only those: nothing else is simulated).
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
#: The MPI operator runs as its own service account, bound by its published manifest.
MPI_OPERATOR_SA = ("mpi-operator", "mpi-operator")
SERVICE_CIDR = "10.96.0.0/16"
#: The controllers the pipeline's objects need (the rest of a real controller manager is off).
KCM_CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "job-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "garbage-collector-controller",
    "disruption-controller",  # the PodDisruptionBudgets of jobs and of the model server
)
#: And for a real node: Service endpoints for kube-proxy (EndpointSlices) and for the API
#: server's service proxy, the smoke test's path (it reads the Endpoints object), the CA bundle
#: every pod's projected service-account volume mounts (``kube-root-ca.crt``).
NODE_KCM_CONTROLLERS = (
    "endpointslice-controller",
    "endpoints-controller",
    "root-ca-certificate-publisher-controller",
)
#: Container log served (by kwok, through the API server's log proxy) for each container name.
CONTAINER_LOGS = {
    "base": "simulated training container: epoch 1/1 accuracy 0.81\n",
    "mpi-launcher": "simulated launcher: rank 0 of 2 up\nrank 1 of 2 up\ntest accuracy 0.90\n",
}


class ControlPlaneError(RuntimeError):
    """A component did not start or became unhealthy; the message carries its log tail."""


def locate_binaries() -> tuple[Path | None, str]:
    """The built bin directory, or ``None`` and the reason (no Go, not built) to skip with."""
    proc = subprocess.run(["bash", str(BUILD_SCRIPT), "--locate"], capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return Path(proc.stdout.strip().splitlines()[-1]), ""
    return None, (proc.stderr or proc.stdout).strip() or f"{BUILD_SCRIPT} --locate failed ({proc.returncode})"


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports: all held open until every one is chosen (one at a
    time, the kernel handed the controller manager and the scheduler the same port)."""
    with contextlib.ExitStack() as stack:
        held = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in held:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in held]


def free_port() -> int:
    return free_ports(1)[0]


# --- certificates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """A client of the API server: an x509 user (CN) with groups (O), as EKS maps IAM principals."""

    user: str
    groups: tuple[str, ...] = ()


class Pki:
    """A throw-away CA and the certificates and keys the control plane needs (ECDSA P-256: fast)."""

    def __init__(self, directory: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._x509, self._hashes, self._ser, self._ec, self._oid = x509, hashes, serialization, ec, NameOID
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "eksml-testenv-ca")])
        now = dt.datetime.now(dt.UTC)
        self._ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._ca_key, hashes.SHA256())
        )
        self.ca = self._write("ca.crt", self._ca.public_bytes(serialization.Encoding.PEM))
        sa_key = ec.generate_private_key(ec.SECP256R1())
        self.sa_key = self._write("sa.key", self._key_pem(sa_key))
        self.sa_pub = self._write(
            "sa.pub",
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )

    def _write(self, name: str, data: bytes) -> Path:
        path = self.dir / name
        path.write_bytes(data)
        path.chmod(0o600)
        return path

    def _key_pem(self, key: Any) -> bytes:
        s = self._ser
        return key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption())

    def issue(
        self,
        name: str,
        common_name: str,
        *,
        groups: tuple[str, ...] = (),
        server: bool = False,
        hosts: tuple[str, ...] = (),
    ) -> tuple[Path, Path]:
        """A certificate signed by the CA: a client (CN, O=groups) or a server for ``hosts``."""
        x509, oid = self._x509, self._oid
        key = self._ec.generate_private_key(self._ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(oid.COMMON_NAME, common_name),
                *(x509.NameAttribute(oid.ORGANIZATION_NAME, g) for g in groups),
            ]
        )
        now = dt.datetime.now(dt.UTC)
        usage = x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if hosts:
            sans: list[Any] = []
            for host in hosts:
                try:
                    sans.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    sans.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._ca_key, self._hashes.SHA256())
        return (
            self._write(f"{name}.crt", cert.public_bytes(self._ser.Encoding.PEM)),
            self._write(f"{name}.key", self._key_pem(key)),
        )


# --- processes ---------------------------------------------------------------------------------


@dataclass
class Component:
    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text[-lines:])


def _get(url: str, context: ssl.SSLContext | None = None, timeout: float = 3.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)


# --- the control plane -------------------------------------------------------------------------


@dataclass
class ControlPlane:
    """One independent cluster: its own etcd, API server, controllers, scheduler, kwok and MPI operator."""

    name: str
    bin_dir: Path
    workdir: Path
    #: Identities the tests act as, by key; ``admin`` is always there (``system:masters``).
    identities: dict[str, Identity] = field(default_factory=dict)
    #: Node groups to simulate (``eksml.cluster.config.ManagedNodeGroup``) and nodes per group.
    node_groups: tuple[Any, ...] = ()
    nodes_per_group: int = 2
    #: False: no kwok (and no simulated nodes); the API server authorizes nodes (Node
    #: authorizer, NodeRestriction) so a real kubelet can join (``k8s_node.RealNode``).
    kwok: bool = True
    components: dict[str, Component] = field(default_factory=dict)
    server: str = ""
    startup_seconds: float = 0.0

    # --- public ---------------------------------------------------------------------------
    def kubeconfig(self, identity: str = "admin") -> Path:
        return self.workdir / f"{identity}.kubeconfig"

    def api_client(self, identity: str = "admin") -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig(identity)))

    def add_identity(self, key: str, user: str, groups: tuple[str, ...] = ()) -> Path:
        """A further client (certificate + kubeconfig) after start-up."""
        self.identities[key] = Identity(user, groups)
        cert, private = self.pki.issue(f"client-{key}", user, groups=groups)
        return self._write_kubeconfig(key, {"client-certificate": str(cert), "client-key": str(private)})

    def logs(self, lines: int = 40) -> str:
        return "\n".join(
            f"----- {self.name}/{c.name} ({c.log}) -----\n{c.tail(lines)}" for c in self.components.values()
        )

    def start(self, timeout: float = 120.0) -> None:
        started = time.monotonic()
        deadline = started + timeout
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pki = Pki(self.workdir / "pki")
        self.identities = {"admin": Identity("eksml-testenv-admin", ("system:masters",)), **self.identities}
        try:
            self._start_etcd(deadline)
            self._start_apiserver(deadline)
            self._write_kubeconfigs()
            self._start_controllers()
            if self.kwok:
                self._create_nodes()
                self._wait_for_nodes(deadline)
            self._install_mpi_operator(deadline)
            self._wait_healthy(deadline)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        for component in reversed(list(self.components.values())):
            component.stop()

    def check_alive(self) -> None:
        dead = [c for c in self.components.values() if not c.alive()]
        if dead:
            raise ControlPlaneError(
                f"{self.name}: component(s) exited: {', '.join(c.name for c in dead)}\n{self.logs()}"
            )

    # --- steps ----------------------------------------------------------------------------
    def _component(self, name: str, argv: list[str]) -> Component:
        component = Component(name, argv, self.workdir / f"{name}.log")
        self.components[name] = component
        component.start()
        return component

    def _wait(self, what: str, probe: Any, deadline: float, components: tuple[str, ...] = ()) -> Any:
        last: Any = None
        while time.monotonic() < deadline:
            for name in components:
                if not self.components[name].alive():
                    raise ControlPlaneError(f"{self.name}: {name} exited while waiting for {what}\n{self.logs(80)}")
            ok, last = probe()
            if ok:
                return last
            time.sleep(0.2)
        raise ControlPlaneError(f"{self.name}: timed out waiting for {what} (last: {str(last)[:300]})\n{self.logs(80)}")

    def _start_etcd(self, deadline: float) -> None:
        port, peer = free_ports(2)
        self.etcd_url = f"http://127.0.0.1:{port}"
        self._component(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-url={self.etcd_url}",
                f"--listen-peer-url=http://127.0.0.1:{peer}",
            ],
        )

        def healthy() -> tuple[bool, Any]:
            code, body = _get(f"{self.etcd_url}/health")
            return code == 200 and '"true"' in body, body

        self._wait("etcd /health", healthy, deadline, ("etcd",))

    def _start_apiserver(self, deadline: float) -> None:
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        serving = self.pki.issue(
            "apiserver",
            "kube-apiserver",
            server=True,
            hosts=(
                "127.0.0.1",
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                str(next(ipaddress.ip_network(SERVICE_CIDR).hosts())),
            ),
        )
        kubelet_client = self.pki.issue(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client", groups=("system:masters",)
        )
        self._component(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--tls-cert-file={serving[0]}",
                f"--tls-private-key-file={serving[1]}",
                f"--client-ca-file={self.pki.ca}",
                "--authorization-mode=" + ("RBAC" if self.kwok else "Node,RBAC"),
                # NamespaceLifecycle, ServiceAccount, PodSecurity, ... are on by default; named for clarity.
                "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,PodSecurity,DefaultTolerationSeconds"
                + ("" if self.kwok else ",NodeRestriction"),
                # Simulated nodes are Ready from the start and stay so: no node.kubernetes.io/not-ready
                # taint on creation, and no node-lifecycle controller to add one (kwok v0.8.0 renewed the
                # Lease of only one of several nodes here, so that controller would fail the others).
                "--disable-admission-plugins=TaintNodesByCondition",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={self.pki.sa_pub}",
                f"--service-account-signing-key-file={self.pki.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--kubelet-client-certificate={kubelet_client[0]}",
                f"--kubelet-client-key={kubelet_client[1]}",
                f"--kubelet-certificate-authority={self.pki.ca}",
                "--kubelet-preferred-address-types=InternalIP",
                "--allow-privileged=true",  # as EKS: privileged pods are possible, Pod Security decides per namespace
                "--profiling=false",
                "--endpoint-reconciler-type=none",  # the "kubernetes" Service cannot point at loopback
                # Who called what, and what the answer was: tests read it to check identities and refusals.
                f"--audit-policy-file={self._audit_policy()}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
            ],
        )
        admin_cert = self.pki.issue("admin", self.identities["admin"].user, groups=self.identities["admin"].groups)
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        context.load_cert_chain(*admin_cert)
        self._admin_tls = context

        def ready() -> tuple[bool, Any]:
            code, body = _get(f"{self.server}/readyz", context)
            return code == 200, body

        self._wait("kube-apiserver /readyz", ready, deadline, ("etcd", "kube-apiserver"))

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    def _audit_policy(self) -> Path:
        path = self.workdir / "audit-policy.json"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "audit.k8s.io/v1",
                    "kind": "Policy",
                    "omitStages": ["RequestReceived"],
                    "rules": [{"level": "Metadata"}],
                }
            )
        )
        return path

    def audit_events(self, user: str) -> list[dict[str, Any]]:
        """Requests the API server answered for ``user`` (audit level Metadata), oldest first."""
        events = []
        with self.audit_log.open() as log:
            for line in log:
                event = json.loads(line)
                if event.get("stage") == "ResponseComplete" and event.get("user", {}).get("username") == user:
                    events.append(event)
        return events

    def _write_kubeconfig(self, key: str, user: dict[str, Any], namespace: str = "default") -> Path:
        path = self.kubeconfig(key)
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": self.name,
                    "clusters": [
                        {
                            "name": self.name,
                            "cluster": {"server": self.server, "certificate-authority": str(self.pki.ca)},
                        }
                    ],
                    "users": [{"name": key, "user": user}],
                    "contexts": [
                        {"name": self.name, "context": {"cluster": self.name, "user": key, "namespace": namespace}}
                    ],
                },
                indent=1,
            )
        )
        path.chmod(0o600)
        return path

    def _write_kubeconfigs(self) -> None:
        clients = {key: (ident.user, ident.groups) for key, ident in self.identities.items()}
        clients["kube-controller-manager"] = ("system:kube-controller-manager", ())
        clients["kube-scheduler"] = ("system:kube-scheduler", ())
        if self.kwok:
            clients["kwok"] = ("kwok-controller", ("system:masters",))  # plays every kubelet
        for key, (user, groups) in clients.items():
            cert, private = self.pki.issue(f"client-{key}", user, groups=groups)
            self._write_kubeconfig(key, {"client-certificate": str(cert), "client-key": str(private)})

    def _start_controllers(self) -> None:
        self.kcm_port, self.scheduler_port, self.kwok_port = free_ports(3)
        self._component(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig('kube-controller-manager')}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.kcm_port}",
                f"--cert-dir={self.workdir / 'kcm-certs'}",
                "--leader-elect=false",
                # Each controller acts as its own service account with its own bootstrap Role.
                "--use-service-account-credentials=true",
                "--controllers=" + ",".join(KCM_CONTROLLERS + (() if self.kwok else NODE_KCM_CONTROLLERS)),
                f"--root-ca-file={self.pki.ca}",
                "--kube-api-qps=100",
                "--kube-api-burst=200",
            ],
        )
        self._component(
            "kube-scheduler",
            [
                str(self.bin_dir / "kube-scheduler"),
                f"--kubeconfig={self.kubeconfig('kube-scheduler')}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.scheduler_port}",
                f"--cert-dir={self.workdir / 'scheduler-certs'}",
                "--leader-elect=false",
            ],
        )
        if not self.kwok:
            return
        kwok_cert = self.pki.issue("kwok-serving", "kwok", server=True, hosts=("127.0.0.1",))
        self._component(
            "kwok",
            [
                str(self.bin_dir / "kwok"),
                f"--config={self._kwok_config()}",
                f"--kubeconfig={self.kubeconfig('kwok')}",
                "--manage-nodes-with-annotation-selector={}={}".format(*KWOK_ANNOTATION),
                "--node-ip=127.0.0.1",
                f"--node-port={self.kwok_port}",
                f"--server-address=127.0.0.1:{self.kwok_port}",
                f"--tls-cert-file={kwok_cert[0]}",
                f"--tls-private-key-file={kwok_cert[1]}",
            ],
        )

    def _kwok_config(self) -> Path:
        """kwok's node stages from its pinned module, our pod stages, and canned container logs."""
        logs = []
        for container, text in CONTAINER_LOGS.items():
            path = self.workdir / f"log-{container}.cri"
            stamp = "2026-01-01T00:00:00.000000000Z"
            path.write_text("".join(f"{stamp} stdout F {line}\n" for line in text.splitlines()))
            logs.append({"containers": [container], "logsFile": str(path), "follow": False})
        cluster_logs = {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "ClusterLogs",
            "metadata": {"name": "canned"},
            "spec": {"logs": logs},
        }
        share = self.bin_dir.parent / "share"
        docs = [
            (share / "node-initialize.yaml").read_text(),
            (share / "node-heartbeat-with-lease.yaml").read_text(),
            STAGES.read_text(),
            json.dumps(cluster_logs),
        ]
        path = self.workdir / "kwok.yaml"
        path.write_text("\n---\n".join(docs))
        return path

    def _admin(self) -> Any:
        if not hasattr(self, "_admin_client"):
            self._admin_client = self.api_client("admin")
        return self._admin_client

    def _create_nodes(self) -> None:
        """One Node object per simulated node: the node group's labels, taints and GPUs."""
        from kubernetes import client

        core = client.CoreV1Api(self._admin())
        gpu_resource = "nvidia.com/gpu"
        for group in self.node_groups:
            for i in range(self.nodes_per_group):
                name = f"{group.name}-{i}"
                capacity = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
                if group.gpu:
                    capacity[gpu_resource] = str(group.gpus_per_node)
                labels = {
                    **group.labels,
                    "eks.amazonaws.com/nodegroup": group.name,
                    # eksctl labels its node groups' nodes so, and selects them by it when it
                    # waits for them (v0.215.0 pkg/apis/eksctl.io/v1alpha5 defaults.go, types.go)
                    "alpha.eksctl.io/nodegroup-name": group.name,
                    "node.kubernetes.io/instance-type": group.instance_types[0],
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "type": "kwok",
                }
                node = {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": name, "labels": labels},
                    "spec": {"taints": [t.to_dict() for t in group.taints]},
                }
                core.create_node(node)
                # The API server drops status on create: set capacity first, then hand the node to
                # kwok, whose node-initialize stage keeps it and adds conditions and addresses.
                core.patch_node_status(name, {"status": {"capacity": capacity, "allocatable": capacity}})
                core.patch_node(name, {"metadata": {"annotations": dict([KWOK_ANNOTATION])}})

    def _wait_for_nodes(self, deadline: float) -> None:
        from kubernetes import client

        core = client.CoreV1Api(self._admin())
        wanted = len(self.node_groups) * self.nodes_per_group

        def ready() -> tuple[bool, Any]:
            nodes = core.list_node().items
            names = [
                n.metadata.name
                for n in nodes
                if any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))
                and not any(t.key.startswith("node.kubernetes.io/") for t in (n.spec.taints or []))
            ]
            return len(names) >= wanted, names

        self._wait(
            f"{wanted} Ready, schedulable node(s)",
            ready,
            deadline,
            ("kwok", "kube-apiserver", "kube-controller-manager"),
        )

    def _install_mpi_operator(self, deadline: float) -> None:
        """The project's pinned add-ons (the MPI operator's CRD and RBAC among them), applied as
        the add-ons step does, then the operator itself with a token of its own service account."""
        from kubernetes import client

        from eksml.cluster.addons import addon_objects
        from eksml.cluster.apply import apply_objects

        # The add-on Deployments would only be pods kwok pretends to run: the controller runs here.
        objects = [o for o in addon_objects() if o["kind"] != "Deployment"]
        apply_objects(self._admin(), objects, log=lambda _msg: None)
        namespace, account = MPI_OPERATOR_SA
        core = client.CoreV1Api(self._admin())

        def account_exists() -> tuple[bool, Any]:
            try:
                core.read_namespaced_service_account(account, namespace)
                return True, None
            except client.ApiException as exc:
                return False, exc.status

        self._wait("the mpi-operator service account", account_exists, deadline)
        token = core.create_namespaced_service_account_token(
            account, namespace, {"spec": {"expirationSeconds": 24 * 3600}}
        ).status.token
        self._write_kubeconfig("mpi-operator", {"token": token})
        self.mpi_health_port = free_port()
        self._component(
            "mpi-operator",
            [
                str(self.bin_dir / "mpi-operator"),
                f"--kubeConfig={self.kubeconfig('mpi-operator')}",
                f"--health-addr=127.0.0.1:{self.mpi_health_port}",
                "--kube-api-qps=50",
                "--kube-api-burst=100",
            ],
        )

    def _wait_healthy(self, deadline: float) -> None:
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # their self-signed serving certs; /healthz only
        checks = {
            "kube-controller-manager": (f"https://127.0.0.1:{self.kcm_port}/healthz", insecure),
            "kube-scheduler": (f"https://127.0.0.1:{self.scheduler_port}/healthz", insecure),
            "mpi-operator": (f"http://127.0.0.1:{self.mpi_health_port}/healthz", None),
        }
        for name, (url, context) in checks.items():

            def healthy(url: str = url, context: ssl.SSLContext | None = context) -> tuple[bool, Any]:
                code, body = _get(url, context)
                return code == 200, f"{code} {body}"

            self._wait(f"{name} {url}", healthy, deadline, (name,))
        self.check_alive()


def remove_workdir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
