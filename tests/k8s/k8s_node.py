"""A real node joined to a test control plane, for the ``node`` test tier.

containerd and runc (Debian packages), CNI bridge networking (Debian's plugins), and the
kubelet and kube-proxy built from the same pinned ``k8s.io/kubernetes`` module as the control
plane (``tools/k8s-testenv``). Images come from ``tools/k8s-node/build-images.sh`` (buildah,
no registry) and are imported into containerd; pods use ``imagePullPolicy: IfNotPresent``.

Everything lives under the node's work folder except what the kernel and these programs make
host-wide (listed in docs/testing.md, "A real node"): :meth:`RealNode.stop` deletes every pod
through the kubelet, runs ``kube-proxy --cleanup``, removes the iptables chains, bridge and
mounts the node made and restores the sysctls it changed. One node per host: the kubelet
listens on its fixed port 10250 of the node IP, so :meth:`RealNode.start` waits for a host-wide
lock (``NODE_LOCK``) that :meth:`RealNode.stop` releases: two test sessions take turns.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k8s_controlplane import Component, ControlPlane, ControlPlaneError, free_ports

ROOT = Path(__file__).resolve().parents[2]
BUILD_IMAGES = ROOT / "tools" / "k8s-node" / "build-images.sh"
BUILD_COREDNS = ROOT / "tools" / "k8s-node" / "build-coredns.sh"
#: Cluster DNS: CoreDNS on the node's address (port 53: kubelet's clusterDNS takes an address only).
CLUSTER_DOMAIN = "cluster.local"
CNI_BIN = Path("/usr/lib/cni")
#: Pod addresses of the node (one /24: one node) and its bridge.
POD_CIDR = "10.244.0.0/24"
BRIDGE = "eksml0"
KUBELET_PORT = 10250
#: Held from start to stop: one node on this host at a time (port 10250, the bridge, iptables).
NODE_LOCK = Path("/run/lock/eksml-node.lock")
#: containerd's content and snapshots persist between sessions (a cache, like the image archives:
#: importing and unpacking GBs of images at every start would cost minutes); its state does not.
CONTAINERD_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "eksml" / "node-containerd"
#: Kernel settings the kubelet, kube-proxy or the CNI bridge may change: restored on stop.
SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
)
IPTABLES_TABLES = ("filter", "nat", "mangle", "raw")


def host_ip() -> str:
    """The source address of the default route: what the node registers as its InternalIP."""
    routes = json.loads(
        subprocess.run(
            ["ip", "-j", "-4", "route", "show", "default"], capture_output=True, text=True, check=True
        ).stdout
    )
    device = routes[0]["dev"]
    addrs = json.loads(
        subprocess.run(
            ["ip", "-j", "-4", "addr", "show", "dev", device], capture_output=True, text=True, check=True
        ).stdout
    )
    return addrs[0]["addr_info"][0]["local"]


def missing_prerequisites(bin_dir: Path | None = None) -> str:
    """Why no image can be built or run here, or (with ``bin_dir``) no node can run ('' when it
    can): root, the Debian packages, the built kubelet and kube-proxy."""
    if os.geteuid() != 0:
        return "building images and running containers needs root (buildah, containerd, kubelet, CNI)"
    needed = {"buildah": "buildah", "mmdebstrap": "mmdebstrap", "runc": "runc", "gcc": "gcc"}
    if bin_dir is not None:
        needed |= {"containerd": "containerd", "ctr": "containerd", "iptables": "iptables"}
    absent = sorted({pkg for tool, pkg in needed.items() if shutil.which(tool) is None})
    if bin_dir is not None and not (CNI_BIN / "bridge").exists():
        absent.append("containernetworking-plugins")
    if absent:
        return f"Debian packages missing: {' '.join(absent)} (tools/k8s-node/install-packages.sh installs them)"
    for binary in ("kubelet", "kube-proxy") if bin_dir is not None else ():
        if not (bin_dir / binary).exists():
            return f"{bin_dir / binary} not built (tools/k8s-testenv/build.sh)"
    return ""


@dataclass(frozen=True)
class Image:
    name: str
    ref: str
    archive: Path


def build_images(*names: str) -> dict[str, Image]:
    """Build (or find in the cache) the base, pause and the named images; by name."""
    proc = subprocess.run(["bash", str(BUILD_IMAGES), *names], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{BUILD_IMAGES} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    images = {}
    for line in proc.stdout.splitlines():
        name, ref, archive = line.split()
        images[name] = Image(name, ref, Path(archive))
    return images


def build_coredns() -> Path:
    """Build (or find in the cache) the CoreDNS binary the node's cluster DNS runs."""
    proc = subprocess.run(["bash", str(BUILD_COREDNS)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{BUILD_COREDNS} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.split()[-1])


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def _read_sysctls() -> dict[str, str]:
    values = {}
    for name in SYSCTLS:
        try:
            values[name] = _sysctl_path(name).read_text().strip()
        except OSError:
            pass
    return values


def _iptables_chains() -> dict[str, set[str]]:
    chains = {}
    for table in IPTABLES_TABLES:
        out = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True, check=False).stdout
        chains[table] = {line[1:].split()[0] for line in out.splitlines() if line.startswith(":")}
    return chains


def _mounts_under(prefixes: tuple[str, ...]) -> list[str]:
    with open("/proc/self/mountinfo") as info:
        points = [line.split()[4] for line in info]
    return [p for p in points if p.startswith(prefixes)]


@dataclass
class RealNode:
    """kubelet + containerd + kube-proxy on this host, registered with ``plane`` as ``name``."""

    plane: ControlPlane
    workdir: Path
    images: dict[str, Image]
    name: str = "eksml-node"
    #: Every image is also named ``<image_registry>/<name>:<image_tag>`` in containerd, as the
    #: settings ``image_registry`` / ``image_tag`` name the images the workloads run.
    image_registry: str = "localhost/eksml"
    image_tag: str = "node"
    labels: dict[str, str] = field(default_factory=dict)
    #: CoreDNS binary (:func:`build_coredns`): with it, the node runs cluster DNS and pods
    #: resolve Services and headless Services' pods; without it, names do not resolve.
    coredns: Path | None = None
    components: dict[str, Component] = field(default_factory=dict)
    startup_seconds: float = 0.0
    ip: str = ""

    # --- public ---------------------------------------------------------------------------
    def start(self, timeout: float = 180.0) -> None:
        self._lock = NODE_LOCK.open("w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[node] waiting for {NODE_LOCK}: another node runs on this host", flush=True)
            fcntl.flock(self._lock, fcntl.LOCK_EX)
        started = time.monotonic()
        deadline = started + timeout
        self.ip = host_ip()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._sysctls_before = _read_sysctls()
        self._chains_before = _iptables_chains()
        try:
            self._start_containerd(deadline)
            self._import_images()
            if self.coredns is not None:
                self._start_cluster_dns(deadline)
            self._start_kubelet(deadline)
            self._start_kube_proxy(deadline)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def stop(self, keep_lock: bool = False) -> None:
        """Pods first (through the kubelet, so CNI and mounts are torn down), then the node.
        ``keep_lock``: hold the host-wide lock until :meth:`release` (to check :meth:`leftovers`
        before another session's node changes the same sysctls and chains)."""
        if self.components.get("kubelet") and self.components["kubelet"].alive():
            self._delete_all_pods()
        for name in ("kube-proxy", "kubelet", "coredns"):
            if name in self.components:
                self.components[name].stop()
        if (self.plane.bin_dir / "kube-proxy").exists():
            subprocess.run(
                [str(self.plane.bin_dir / "kube-proxy"), "--cleanup"], capture_output=True, check=False, timeout=60
            )
        self._remove_containers()
        if "containerd" in self.components:
            self.components["containerd"].stop()
        self._kill_shims()
        for point in reversed(_mounts_under((str(self.workdir) + "/", "/run/netns/cni-"))):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, check=False)
        if hasattr(self, "_chains_before"):
            self._remove_new_chains()
        for name, value in getattr(self, "_sysctls_before", {}).items():
            try:
                if _sysctl_path(name).read_text().strip() != value:
                    _sysctl_path(name).write_text(value)
            except OSError:
                pass
        if not keep_lock:
            self.release()

    def release(self) -> None:
        """Let another session start its node (the host-wide lock)."""
        if getattr(self, "_lock", None) is not None:
            self._lock.close()
            self._lock = None

    def leftovers(self) -> list[str]:
        """What a stopped node still has on the host (empty when :meth:`stop` undid everything)."""
        found = [f"process {c.name}" for c in self.components.values() if c.alive()]
        found += [f"shim pid {pid}" for pid in self._shim_pids()]
        found += [f"mount {m}" for m in _mounts_under((str(self.workdir) + "/", "/run/netns/cni-"))]
        if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True, check=False).returncode == 0:
            found.append(f"link {BRIDGE}")
        if hasattr(self, "_chains_before"):
            now = _iptables_chains()
            found += [f"iptables -t {t} chain {c}" for t in IPTABLES_TABLES for c in now[t] - self._chains_before[t]]
        now_sysctls = _read_sysctls()
        found += [
            f"sysctl {k}={now_sysctls.get(k)} (was {v})"
            for k, v in getattr(self, "_sysctls_before", {}).items()
            if now_sysctls.get(k) != v
        ]
        return found

    def logs(self, lines: int = 40) -> str:
        return "\n".join(f"----- node/{c.name} ({c.log}) -----\n{c.tail(lines)}" for c in self.components.values())

    def ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )

    # --- steps ----------------------------------------------------------------------------
    def _component(self, name: str, argv: list[str]) -> Component:
        component = Component(name, argv, self.workdir / f"{name}.log")
        self.components[name] = component
        component.start()
        return component

    def _wait(self, what: str, probe: Any, deadline: float, component: str) -> None:
        last: Any = None
        while time.monotonic() < deadline:
            if not self.components[component].alive():
                raise ControlPlaneError(f"node: {component} exited while waiting for {what}\n{self.logs(80)}")
            ok, last = probe()
            if ok:
                return
            time.sleep(0.2)
        raise ControlPlaneError(f"node: timed out waiting for {what} (last: {str(last)[:300]})\n{self.logs(80)}")

    @property
    def socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    def _start_containerd(self, deadline: float) -> None:
        state = self.workdir / "containerd"
        cni_conf = self.workdir / "cni"
        cni_conf.mkdir(parents=True, exist_ok=True)
        (cni_conf / "10-eksml.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "eksml",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": BRIDGE,
                            "isGateway": True,
                            # Pods only talk to each other and to this host: no NAT to the outside.
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": POD_CIDR}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(self.workdir / "cni-ipam"),
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                }
            )
        )
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = self.workdir / "containerd.toml"
        config.write_text(
            f"""version = 2
root = "{CONTAINERD_ROOT}"
state = "{state / "state"}"
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{state / "opt"}"
[{cri}]
  sandbox_image = "{self.images["eksml-pause"].ref}"
  # This host (a VM without CAP_SYS_RESOURCE) refuses a lower oom_score_adj: without this,
  # runc fails every sandbox with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  disable_apparmor = true
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{cni_conf}"
"""
        )
        self._component("containerd", ["containerd", "--config", str(config)])

        def up() -> tuple[bool, Any]:
            if not self.socket.exists():
                return False, "no socket yet"
            proc = self.ctr("version")
            return proc.returncode == 0, proc.stderr

        self._wait("containerd", up, deadline, "containerd")

    def _import_images(self) -> None:
        present = set(self.ctr("images", "list", "--quiet").stdout.split())
        for image in self.images.values():
            if image.name == "eksml-base" or image.ref in present:
                continue
            proc = self.ctr("images", "import", "--no-unpack", str(image.archive))
            if proc.returncode != 0:
                raise ControlPlaneError(f"node: importing {image.archive} failed: {proc.stderr}")
        for image in self.images.values():
            if image.name.startswith("eksml-"):
                continue
            alias = f"{self.image_registry}/{image.name}:{self.image_tag}"
            proc = self.ctr("images", "tag", "--force", image.ref, alias)
            if proc.returncode != 0:
                raise ControlPlaneError(f"node: tagging {image.ref} as {alias} failed: {proc.stderr}")

    def _start_kubelet(self, deadline: float) -> None:
        pki = self.plane.pki
        client_cert = pki.issue("kubelet-client", f"system:node:{self.name}", groups=("system:nodes",))
        serving = pki.issue("kubelet-serving", self.name, server=True, hosts=(self.ip, self.name))
        kubeconfig = self.plane._write_kubeconfig(
            "kubelet", {"client-certificate": str(client_cert[0]), "client-key": str(client_cert[1])}
        )
        (self.healthz_port,) = free_ports(1)
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.ip,
            "port": KUBELET_PORT,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.healthz_port,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(pki.ca)},
            },
            # Only the API server (client certificate from the same CA) calls the kubelet here.
            "authorization": {"mode": "AlwaysAllow"},
            "tlsCertFile": str(serving[0]),
            "tlsPrivateKeyFile": str(serving[1]),
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            # This host has cgroup v1 only; no per-QoS cgroup tree, so nothing stays in
            # /sys/fs/cgroup after the node stops (each container still gets its limits).
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failSwapOn": False,
            "podLogsDir": str(self.workdir / "pod-logs"),
            "resolvConf": "/etc/resolv.conf",
            # Images are imported, never pulled: never garbage-collect them, and a busy test
            # machine's disk must not evict the pods.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "nodefs.inodesFree": "1%",
                "imagefs.available": "1%",
            },
            "serializeImagePulls": False,
            "maxPods": 40,
        }
        if self.coredns is not None:
            config |= {"clusterDNS": [self.ip], "clusterDomain": CLUSTER_DOMAIN}
        path = self.workdir / "kubelet.yaml"
        path.write_text(json.dumps(config, indent=1))
        labels = ",".join(f"{k}={v}" for k, v in self.labels.items())
        self._component(
            "kubelet",
            [
                str(self.plane.bin_dir / "kubelet"),
                f"--config={path}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.workdir / 'kubelet'}",
                f"--cert-dir={self.workdir / 'kubelet-pki'}",
                f"--hostname-override={self.name}",
                f"--node-ip={self.ip}",
                *([f"--node-labels={labels}"] if labels else []),
            ],
        )
        from kubernetes import client

        core = client.CoreV1Api(self.plane._admin())

        def ready() -> tuple[bool, Any]:
            try:
                node = core.read_node(self.name)
            except client.ApiException as exc:
                return False, exc.status
            conditions = {c.type: c.status for c in node.status.conditions or []}
            return conditions.get("Ready") == "True", conditions

        self._wait(f"node {self.name} Ready", ready, deadline, "kubelet")

    def _start_cluster_dns(self, deadline: float) -> None:
        """CoreDNS with its kubernetes plugin watching the control plane, on the node's address
        (pods reach the host there, not on loopback); ready once the plugin has synced."""
        (ready_port,) = free_ports(1)
        corefile = self.workdir / "Corefile"
        corefile.write_text(
            f""".:53 {{
    bind {self.ip}
    ready 127.0.0.1:{ready_port}
    errors
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {self.plane.kubeconfig("admin")} {self.plane.name}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
}}
"""
        )
        self._component("coredns", [str(self.coredns), "-conf", str(corefile)])
        from k8s_controlplane import _get

        def ready() -> tuple[bool, Any]:
            code, body = _get(f"http://127.0.0.1:{ready_port}/ready")
            return code == 200, f"{code} {body}"

        self._wait("CoreDNS /ready", ready, deadline, "coredns")

    def _start_kube_proxy(self, deadline: float) -> None:
        cert = self.plane.pki.issue("kube-proxy", "system:kube-proxy")
        kubeconfig = self.plane._write_kubeconfig(
            "kube-proxy", {"client-certificate": str(cert[0]), "client-key": str(cert[1])}
        )
        healthz, metrics = free_ports(2)
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "mode": "iptables",
            "hostnameOverride": self.name,
            "clusterCIDR": POD_CIDR,
            "healthzBindAddress": f"127.0.0.1:{healthz}",
            "metricsBindAddress": f"127.0.0.1:{metrics}",
            # Leave the host's conntrack table size and timeouts as they are.
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            # NodePorts on 127.0.0.1 would need net.ipv4.conf.all.route_localnet=1.
            "iptables": {"localhostNodePorts": False},
        }
        path = self.workdir / "kube-proxy.yaml"
        path.write_text(json.dumps(config, indent=1))
        self._component("kube-proxy", [str(self.plane.bin_dir / "kube-proxy"), f"--config={path}"])
        from k8s_controlplane import _get

        def healthy() -> tuple[bool, Any]:
            code, body = _get(f"http://127.0.0.1:{healthz}/healthz")
            return code == 200, f"{code} {body}"

        self._wait("kube-proxy /healthz", healthy, deadline, "kube-proxy")

    # --- teardown ---------------------------------------------------------------------------
    def _delete_all_pods(self, timeout: float = 120.0) -> None:
        from kubernetes import client

        core = client.CoreV1Api(self.plane._admin())
        selector = f"spec.nodeName={self.name}"
        for pod in core.list_pod_for_all_namespaces(field_selector=selector).items:
            try:
                core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=5)
            except client.ApiException:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not core.list_pod_for_all_namespaces(field_selector=selector).items:
                return
            time.sleep(0.5)

    def _remove_containers(self) -> None:
        """Whatever the kubelet left (a pod still terminating): task, container, sandbox."""
        if not self.socket.exists():
            return
        for container in self.ctr("containers", "list", "--quiet").stdout.split():
            self.ctr("tasks", "kill", "--signal", "SIGKILL", container)
            self.ctr("tasks", "delete", "--force", container)
            self.ctr("containers", "delete", container)

    def _shim_pids(self) -> list[int]:
        """containerd-shim-runc-v2 processes of this node's containerd (they outlive it)."""
        marker = str(self.socket).encode()
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and marker in argv:
                pids.append(int(proc.name))
        return pids

    def _kill_shims(self) -> None:
        for pid in self._shim_pids():
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass

    def _remove_new_chains(self) -> None:
        """iptables chains the kubelet, kube-proxy and CNI added (kube-proxy --cleanup leaves the
        kubelet's KUBE-IPTABLES-HINT / KUBE-KUBELET-CANARY and the CNI portmap chains)."""
        now = _iptables_chains()
        for table in IPTABLES_TABLES:
            new = now[table] - self._chains_before[table]
            if not new:
                continue
            rules = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True, check=False).stdout
            for line in rules.splitlines():
                parts = shlex.split(line)
                if line.startswith("-A ") and parts[1] not in new and "-j" in parts:
                    if parts[parts.index("-j") + 1] in new:
                        subprocess.run(["iptables", "-t", table, "-D", *parts[1:]], capture_output=True, check=False)
            for chain in new:
                subprocess.run(["iptables", "-t", table, "-F", chain], capture_output=True, check=False)
            for chain in new:
                subprocess.run(["iptables", "-t", table, "-X", chain], capture_output=True, check=False)
