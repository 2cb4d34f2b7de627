"""A local Kubernetes cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
kwok (fake nodes) with runtime-chosen ports — and, with ``real_node=True``, a real node whose pods
run (node.py) plus the Traefik ingress in front of it (ingress.py).

Without a real node everything listens on 127.0.0.1 and the API server publishes no endpoint for
the `kubernetes` Service (nothing inside the cluster connects to it). With one, the API server
listens on, and advertises, the host end of the node's veth (network.py): an address of this
machine that pods reach through kube-proxy."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

from . import flags, hostnet, ingress, kubeconfig, toolchain
from . import pki as pkimod
from .errors import ClusterError, KubectlError
from .network import NodeNetwork
from .node import RealNode
from .nodes import DEFAULT_NODES, NodeSpec
from .processes import OWNER_ENV, Component, free_port, kill_owned, stop_all, wait_until

STATE_FILE = "state.json"
STATE_VERSION = 2

# Stopped in this order: the node and the clients first so they do not spin on a vanished
# apiserver, etcd last so the apiserver can shut down cleanly.
_STOP_ORDER = (
    ("node",),
    ("kwok", "kube-scheduler", "kube-controller-manager"),
    ("kube-apiserver",),
    ("etcd",),
)


def _default_runtime_parent() -> Path | None:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else None


class ControlPlane:
    """Start/stop a throw-away control plane.

    ``with ControlPlane(state_dir) as cp: cp.kubectl("get", "nodes")``

    ``state_dir`` keeps logs and ``state.json`` (default: a temp dir removed on stop).
    PKI, kubeconfigs and etcd data live in a separate runtime dir on tmpfs.
    ``die_with_parent`` makes the kernel SIGKILL the components if this process dies;
    the CLI's ``up`` turns it off so the plane outlives the launcher.

    ``real_node=True`` adds a real node (root needed) and the ingress; ``images`` is the manifest
    of images.ensure(), whose archives the node imports (the ingress needs its Traefik image).
    """

    def __init__(
        self,
        state_dir: str | os.PathLike | None = None,
        *,
        nodes: Iterable[NodeSpec] = DEFAULT_NODES,
        bin_dir: str | os.PathLike | None = None,
        build: bool = True,
        runtime_parent: str | os.PathLike | None = None,
        start_timeout: float = 120.0,
        stop_timeout: float = 10.0,
        die_with_parent: bool = True,
        real_node: bool = False,
        images: dict | None = None,
    ):
        self._own_state_dir = state_dir is None
        # Absolute: the node's components get paths under it (a relative unix:// endpoint is a host name).
        self.state_dir = Path(state_dir).absolute() if state_dir else None
        self.nodes = tuple(nodes)
        self.bin_dir = Path(bin_dir) if bin_dir else None
        self.build = build
        self.runtime_parent = Path(runtime_parent) if runtime_parent else _default_runtime_parent()
        self.real_node = real_node
        self.images = images or {}
        if real_node and not {"pause", "traefik"} <= set(self.images.get("images", {})):
            raise ClusterError("a real node needs the images manifest (images.ensure()) with pause and traefik")
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.die_with_parent = die_with_parent

        self.runtime_dir: Path | None = None
        self.kubeconfig: Path | None = None
        self.server: str | None = None
        self.host = "127.0.0.1"  # where the API server listens
        self.network: NodeNetwork | None = None
        self.node: RealNode | None = None
        self.ingress_url: str | None = None
        self.ports: dict[str, int] = {}
        self.components: dict[str, Component] = {}
        self.startup_seconds: float | None = None
        self._ssl_ctx: ssl.SSLContext | None = None
        self._commands: dict[str, tuple[list[str], dict[str, str]]] = {}

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> Self:
        """Start everything; returns once /readyz is ok, the default ServiceAccount
        exists and all fake nodes are Ready. Cleans up and re-raises on failure."""
        if self.components:
            raise ClusterError("control plane already started")
        t0 = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop every component (SIGTERM, SIGKILL after stop_timeout) and delete the
        runtime dir. Safe to call repeatedly and after a failed start."""
        remaining = dict(self.components)
        for group in _STOP_ORDER:
            stop_all([remaining.pop(n) for n in group if n in remaining], self.stop_timeout)
        stop_all(list(remaining.values()), self.stop_timeout)
        self.components.clear()
        if self.state_dir is not None:
            # Catches processes a lost/corrupt state file no longer lists.
            kill_owned(self._owner(), timeout=3.0)
        self._stop_node()
        self._ssl_ctx = None
        if self.runtime_dir is None and self.state_dir is not None:
            self.runtime_dir = _runtime_dir_from_link(self.state_dir / "kubeconfig")
        if self.runtime_dir is not None:
            _remove_runtime_dir(self.runtime_dir)
            self.runtime_dir = None
        if self.state_dir is not None:
            (self.state_dir / STATE_FILE).unlink(missing_ok=True)
            (self.state_dir / "kubeconfig").unlink(missing_ok=True)
            if self._own_state_dir:
                shutil.rmtree(self.state_dir, ignore_errors=True)
                self.state_dir = None

    def _stop_node(self) -> None:
        """The node's network namespace, veth, routes, guard, cgroups and files (its processes are
        gone by now); also a slot a lost state file no longer names."""
        if self.node is not None:
            self.node.stop()
        elif self.network is not None:
            hostnet.teardown(self.network)
        if self.state_dir is not None:
            for net in hostnet.claimed_by(self._owner()):
                hostnet.teardown(net)
        self.node = self.network = None

    def _owner(self) -> str:
        return str(self.state_dir.resolve())

    @classmethod
    def attach(cls, state_dir: str | os.PathLike) -> Self:
        """Re-create a handle for a plane started by another process (e.g. the ``up``
        CLI) from its state file; ``stop()`` on it stops that plane."""
        state_dir = Path(state_dir)
        try:
            state = json.loads((state_dir / STATE_FILE).read_text())
        except (OSError, ValueError) as e:
            raise ClusterError(f"no usable {STATE_FILE} in {state_dir}: {e}") from None
        cp = cls(state_dir, bin_dir=state["bin_dir"], die_with_parent=False)
        cp.runtime_dir = Path(state["runtime_dir"])
        cp.kubeconfig = Path(state["kubeconfig"])
        cp.server = state.get("server")
        cp.host = state.get("host", "127.0.0.1")
        cp.ports = state.get("ports", {})
        cp.ingress_url = state.get("ingress_url")
        if state.get("node_slot"):
            cp.network = NodeNetwork(state["node_slot"])
            cp.node = RealNode(cp.network, Path(state["node_root"]), cp.bin_dir, cp._owner(), die_with_parent=False)
        cp.components = {
            c["name"]: Component.adopt(c["name"], c["pid"], c["start_time"], Path(c["log"]))
            for c in state["components"]
        }
        return cp

    def running(self) -> bool:
        return bool(self.components) and all(c.alive() for c in self.components.values())

    # ------------------------------------------------------------------ helpers for users

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for subprocesses (kopf, helm, kubectl) talking to this plane."""
        env = dict(os.environ if base is None else base)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["KUBECACHEDIR"] = str(self._kubectl_cache())
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess:
        """Run the pinned kubectl against this plane; text stdout/stderr captured.
        Raises KubectlError (stderr included in str()) when ``check`` and it fails."""
        argv = [
            str(self.bin_dir / "kubectl"),
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self._kubectl_cache()}",
            *args,
        ]
        proc = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode:
            raise KubectlError(proc.returncode, argv, proc.stdout, proc.stderr)
        return proc

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10.0):
        """Minimal REST call as the admin user; returns (status, decoded JSON or text)."""
        conn = http.client.HTTPSConnection(
            self.host, self.ports["kube-apiserver"], context=self._ssl(), timeout=timeout
        )
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read().decode()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw

    # ------------------------------------------------------------------ internals

    def _start(self) -> None:
        self.bin_dir = self.bin_dir or toolchain.ensure(build_if_missing=self.build)
        stages = toolchain.kwok_stages_file(self.bin_dir)
        if self.state_dir is None:
            self.state_dir = Path(tempfile.mkdtemp(prefix="conch-cluster-"))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        logs = self.state_dir / "logs"
        logs.mkdir(exist_ok=True)
        parent = self.runtime_parent or self.state_dir
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="conch-", dir=parent))
        rt = self.runtime_dir

        names = (
            "etcd",
            "etcd-peer",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
        )
        self.ports = {n: free_port() for n in names}
        service_cidr, service_ip, fake_pod_cidr = flags.SERVICE_CIDR, flags.SERVICE_IP, flags.POD_CIDR
        if self.real_node:
            hostnet.require_tools()
            self.network = hostnet.claim_slot(self._owner())
            self._save_state()  # the slot is ours from here on: `down` must find it
            hostnet.create(self.network)
            self.host = self.network.host_ip
            service_cidr, service_ip = self.network.service_cidr, self.network.apiserver_service_ip
            fake_pod_cidr = self.network.fake_pod_cidr
        self.server = f"https://{self.host}:{self.ports['kube-apiserver']}"

        p = pkimod.generate(
            rt / "pki",
            ip_sans=sorted({"127.0.0.1", self.host, service_ip}),
            dns_sans=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
        )
        kcfg = {
            name: kubeconfig.write(rt / f"{name}.kubeconfig", self.server, p.ca.cert, pair)
            for name, pair in p.clients.items()
        }
        self.kubeconfig = kcfg["admin"]
        (self.state_dir / "kubeconfig").unlink(missing_ok=True)
        (self.state_dir / "kubeconfig").symlink_to(self.kubeconfig)

        def spawn(name: str, argv: list[str], env: dict | None = None) -> Component:
            (logs / f"{name}.log").write_text("")  # one plane per state dir: don't mix runs
            self._commands[name] = (argv, {**(env or os.environ), OWNER_ENV: self._owner()})
            return self._spawn(name)

        b, ports = self.bin_dir, self.ports
        etcd = spawn("etcd", flags.etcd(b, rt / "etcd", ports["etcd"], ports["etcd-peer"]))
        wait_until("etcd /health", lambda: _etcd_healthy(ports["etcd"]), 30, [etcd])

        apiserver = spawn(
            "kube-apiserver",
            flags.kube_apiserver(
                b, p, ports["kube-apiserver"], ports["etcd"], bind=self.host,
                advertise=self.host if self.real_node else None, service_cidr=service_cidr,
            ),
        )
        wait_until(
            "kube-apiserver /readyz", self._apiserver_ready, self.start_timeout, [etcd, apiserver]
        )

        for name, argv in (
            ("kube-controller-manager", flags.kube_controller_manager),
            ("kube-scheduler", flags.kube_scheduler),
        ):
            spawn(name, argv(b, p, ports[name], kcfg[name]))
        spawn(
            "kwok",
            flags.kwok(b, self.kubeconfig, stages, ports["kwok"], fake_pod_cidr),
            # Own workdir: kwok would otherwise also load a user's ~/.kwok/kwok.yaml.
            env={**os.environ, "KWOK_WORKDIR": str(rt / "kwok")},
        )

        for node in self.nodes:
            status, body = self.api("POST", "/api/v1/nodes", node.manifest())
            if status not in (201, 409):
                raise ClusterError(f"creating node {node.name} failed: {status} {body}")

        watch = list(self.components.values())
        wait_until("default ServiceAccount", self._default_sa_exists, self.start_timeout, watch)
        wait_until("fake nodes Ready", self._nodes_ready, self.start_timeout, watch)
        wait_until(
            "kube-scheduler /healthz",
            lambda: _https_ok(self.ports["kube-scheduler"], "/healthz"),
            self.start_timeout,
            watch,
        )
        if self.real_node:
            self._start_node(p, kcfg)

    def _start_node(self, p: pkimod.Pki, kcfg: dict[str, Path]) -> None:
        self.node = RealNode(self.network, self.state_dir / "node", self.bin_dir, self._owner(),
                             die_with_parent=self.die_with_parent)
        self.components["node"] = self.node.start(p.ca.cert, kcfg, self.api)
        self._save_state()
        images = self.images["images"]
        self.node.wait_ready(self.api, [Path(i["archive"]) for i in images.values()], self.start_timeout)
        self.ingress_url = ingress.install(self, images["traefik"]["ref"],
                                           toolchain.gateway_api_crds_file(self.bin_dir), self.network.node_ip,
                                           self.start_timeout)
        self._save_state()

    def _spawn(self, name: str) -> Component:
        argv, env = self._commands[name]
        log = self.state_dir / "logs" / f"{name}.log"
        c = Component.spawn(name, argv, log, env=env, die_with_parent=self.die_with_parent)
        self.components[name] = c
        self._save_state()  # so `down` can clean up even if we die mid-start
        return c

    def restart_apiserver(self) -> None:
        """Stops kube-apiserver and starts it again with the same flags, as an upgrade or a
        crash would: clients see their connections and watches break, then the API return."""
        old = self.components["kube-apiserver"]
        old.signal(signal.SIGTERM)
        if not old.wait(self.stop_timeout):
            old.signal(signal.SIGKILL)
            old.wait(5)
        apiserver = self._spawn("kube-apiserver")
        wait_until("kube-apiserver /readyz", self._apiserver_ready, self.start_timeout,
                   [self.components["etcd"], apiserver])

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_ctx is None:
            self._ssl_ctx = kubeconfig.ssl_context(self.kubeconfig)
        return self._ssl_ctx

    def _kubectl_cache(self) -> Path:
        # Per-plane discovery cache: ports are random, so ~/.kube/cache would only grow.
        return (self.runtime_dir or Path(tempfile.gettempdir())) / "kubectl-cache"

    def _save_state(self) -> None:
        state = {
            "version": STATE_VERSION,
            "k8s_version": toolchain.pinned_version(),
            "bin_dir": str(self.bin_dir),
            "state_dir": str(self.state_dir),
            "runtime_dir": str(self.runtime_dir),
            "kubeconfig": str(self.kubeconfig),
            "server": self.server,
            "host": self.host,
            "ports": self.ports,
            "node_slot": self.network.slot if self.network else None,
            "node_root": str(self.node.paths.root) if self.node else None,
            "ingress_url": self.ingress_url,
            "launcher_pid": os.getpid(),
            "components": [
                {"name": c.name, "pid": c.pid, "start_time": c.start_time, "log": str(c.log)}
                for c in self.components.values()
            ],
        }
        tmp = self.state_dir / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_dir / STATE_FILE)

    def _apiserver_ready(self) -> bool:
        status, body = self.api("GET", "/readyz")
        return status == 200 and str(body).strip() == "ok"

    def _default_sa_exists(self) -> bool:
        return self.api("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200

    def _nodes_ready(self) -> bool:
        # Ready is not enough: the node lifecycle controller may have tainted a node
        # node.kubernetes.io/not-ready before kwok initialised it, and pods created
        # right after start() would stay Pending until the taint is lifted.
        status, body = self.api("GET", "/api/v1/nodes")
        if status != 200:
            return False
        ready = {
            n["metadata"]["name"]
            for n in body["items"]
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
            and not any(
                t["key"].startswith("node.kubernetes.io/") for t in n["spec"].get("taints", [])
            )
        }
        return all(n.name in ready for n in self.nodes)


def _etcd_healthy(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
        return json.load(r).get("health") == "true"


def _https_ok(port: int, path: str) -> bool:
    # Health endpoints are in --authorization-always-allow-paths; only presence matters.
    ctx = ssl._create_unverified_context()
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    finally:
        conn.close()


def _runtime_dir_from_link(link: Path) -> Path | None:
    try:
        return Path(os.readlink(link)).parent
    except OSError:
        return None


def _remove_runtime_dir(path: Path) -> None:
    # Guard against a corrupted state file pointing somewhere we must not delete.
    if path.name.startswith("conch-") and path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
