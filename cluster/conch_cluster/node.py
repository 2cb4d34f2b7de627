"""A real node joined to the local control plane: containerd + runc + CNI + kubelet + kube-proxy +
CoreDNS in a network namespace of its own (see network.py for its addresses, nodeinit.py for how it
is isolated), with the project's images imported into its containerd.

The control plane drives it: ``RealNode.start()`` after the API server is up, ``stop()`` before the
API server goes. Pods really run here; everything the node creates is gone after ``stop()``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from . import hostnet, nodeconfig
from .errors import ClusterError
from .network import NodeNetwork
from .processes import OWNER_ENV, Component, tail, wait_until
from .toolchain import cache_root

# The host paths the node's mount namespace replaces: a node directory under them would vanish.
_MASKED = ("/run", "/var/run", "/var/lib", "/var/log", "/proc")
SYSTEM_TOOLS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables")


def require_system_tools() -> None:
    missing = [t for t in SYSTEM_TOOLS if shutil.which(t) is None]
    if missing:
        raise ClusterError(f"a real node needs {', '.join(missing)}: run `make tools` (apt-get install "
                           "containerd runc containernetworking-plugins iptables)")
    if not any(Path(d, "bridge").exists() for d in nodeconfig.CNI_BIN_DIRS):
        raise ClusterError("the CNI plugins are missing: apt-get install containernetworking-plugins")


class RealNode:
    def __init__(self, net: NodeNetwork, root: Path, bin_dir: Path, owner: str, *, die_with_parent: bool = True):
        # containerd's root is kept per slot (one node per slot at a time): a node started again
        # finds its images unpacked, and importing an image it has is a no-op.
        image_store = cache_root() / "node" / f"slot-{net.slot}" / "containerd"
        for path in (root, image_store):
            resolved = str(path.resolve())
            if any(resolved == m or resolved.startswith(m + "/") for m in _MASKED):
                raise ClusterError(f"{path} is under a path the node's mount namespace replaces ({', '.join(_MASKED)})")
        self.net = net
        self.paths = nodeconfig.NodePaths(root.absolute(), image_store.absolute())
        self.bin_dir = bin_dir
        self.owner = owner
        self.die_with_parent = die_with_parent
        self.component: Component | None = None

    @property
    def name(self) -> str:
        return nodeconfig.NODE_NAME

    def start(self, ca: Path, kubeconfigs: dict[str, Path], api) -> Component:
        """Writes the node's configuration and starts its init; returns at once with the init's
        Component (so the caller can record it before waiting in wait_ready())."""
        require_system_tools()
        for status in (api("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", nodeconfig.coredns_rbac()[0]),
                       api("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
                           nodeconfig.coredns_rbac()[1])):
            if status[0] not in (201, 409):
                raise ClusterError(f"creating CoreDNS's RBAC failed: {status}")
        self._forget_store_of_another_boot()
        cgroup_root = hostnet.cgroup_root(self.net)
        hostnet.create_cgroups(cgroup_root)
        commands = nodeconfig.write_all(self.bin_dir, self.net, self.paths, ca, kubeconfigs, cgroup_root)
        spec = {
            "netns": str(hostnet.NETNS_DIR / self.net.netns),
            "hostname": self.name,
            "bin_dir": str(self.bin_dir),
            "logs": str(self.paths.logs),
            "var_log": str(self.paths.var_log),
            "sysctl_masks": {name: str(self.paths.sysctls / name.replace("/", "."))
                             for name in nodeconfig.KUBELET_SYSCTLS},
            "components": commands,
            "cri_socket": str(self.paths.containerd_socket),
        }
        spec_file = self.paths.config / "node.json"
        spec_file.write_text(json.dumps(spec, indent=2))
        self.component = Component.spawn(
            "node", [sys.executable, "-m", "conch_cluster.nodeinit", str(spec_file)], self.paths.logs / "node.log",
            env={**os.environ, OWNER_ENV: self.owner}, die_with_parent=self.die_with_parent)
        hostnet.hold_claim(self.net, self.component.pid)
        return self.component

    def wait_ready(self, api, images: list[Path], timeout: float) -> None:
        """Until containerd answers, the images are imported, the Node is Ready (and untainted),
        kube-proxy has synced and CoreDNS answers."""
        watch = [self.component]
        wait_until("containerd", self._containerd_answers, timeout, watch)
        self.import_images(images)
        wait_until(f"node {self.name} Ready", lambda: self._node_ready(api), timeout, watch)
        wait_until("kube-proxy synced", lambda: _http_ok(
            f"http://{self.net.node_ip}:{nodeconfig.KUBE_PROXY_HEALTH_PORT}/healthz"), timeout, watch)
        wait_until("CoreDNS ready", lambda: _http_ok(
            f"http://{self.net.dns_ip}:{nodeconfig.COREDNS_READY_PORT}/ready"), timeout, watch)

    def _forget_store_of_another_boot(self) -> None:
        """The image store is reused only by nodes of the same boot of this machine (one test run,
        one working session). A store from another boot — a crash mid-write, a cache copied from
        another machine, where overlay layers may have lost their xattrs — is started afresh, since
        containerd would use its unpacked layers as they are."""
        store, marker = self.paths.image_store, self.paths.image_store / "conch-boot-id"
        boot = _boot_id()
        recorded = marker.read_text() if marker.is_file() else None
        if recorded != boot and store.is_dir() and any(store.iterdir()):
            if _mounts_under(store):
                raise ClusterError(f"mounts remain under {store}: stop the node that uses it first")
            shutil.rmtree(store, ignore_errors=True)
        store.mkdir(parents=True, exist_ok=True)
        marker.write_text(boot)

    # ------------------------------------------------------------------ images

    def ctr(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        argv = ["ctr", "--address", str(self.paths.containerd_socket), "--namespace", "k8s.io", *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode:
            raise ClusterError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
        return proc

    def import_images(self, archives: list[Path]) -> None:
        """Imports the archives the store does not hold yet (an archive is named by its image's ID
        and tags, so the same name is the same content), then forgets every other image (containerd
        collects their content): the store keeps exactly the images of the current build."""
        ledger = self.paths.image_store / "conch-imported.json"
        try:
            imported: dict[str, list[str]] = json.loads(ledger.read_text())
        except (OSError, ValueError):
            imported = {}
        present = self.complete_images()  # a store kept from a run that was killed may hold names without content
        wanted: set[str] = set()
        for archive in archives:
            names = imported.get(archive.name)
            if not names or not set(names) <= present:
                self.ctr("images", "import", str(archive))
                names = sorted(_archive_names(archive))
            imported[archive.name] = names
            wanted |= set(names)
        ledger.write_text(json.dumps({a.name: imported[a.name] for a in archives}, indent=2))
        stale = sorted(name for name in self.images()
                       if name not in wanted and not name.startswith("sha256:") and "@sha256:" not in name)
        if stale:
            self.ctr("images", "remove", *stale)

    def complete_images(self) -> set[str]:
        """Image names whose every blob is in the store (`ctr images check` says complete)."""
        out = self.ctr("images", "check").stdout.splitlines()[1:]
        return {fields[0] for fields in map(str.split, out) if len(fields) > 3 and fields[3] == "complete"}

    def images(self) -> dict[str, str]:
        """Image name → digest, as the node's containerd knows them."""
        out = self.ctr("images", "list").stdout.splitlines()[1:]
        return {line.split()[0]: line.split()[2] for line in out if line.strip()}

    # ------------------------------------------------------------------ stop

    def stop(self, timeout: float = 20.0) -> None:
        if self.component is not None:
            from .processes import stop_all

            stop_all([self.component], timeout)
            self.component = None
        hostnet.teardown(self.net)
        self.remove_files()

    def remove_files(self) -> None:
        root = self.paths.root
        if not root.exists():
            return
        mounted = _mounts_under(root)
        if mounted:  # never delete through a mount (it would delete what is mounted)
            raise ClusterError(f"mounts remain under {root}: {mounted[:5]}")
        # Keep the logs (next to the control plane's); the rest is large (image layers).
        for child in root.iterdir():
            if child.name not in ("logs", "var-log", "config"):
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)

    # ------------------------------------------------------------------ probes

    def _containerd_answers(self) -> bool:
        if not self.paths.containerd_socket.exists():
            return False
        argv = ["ctr", "--address", str(self.paths.containerd_socket), "version"]
        return subprocess.run(argv, capture_output=True, timeout=10, check=False).returncode == 0

    def _node_ready(self, api) -> bool:
        status, body = api("GET", f"/api/v1/nodes/{self.name}")
        if status != 200:
            return False
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in body.get("status", {}).get("conditions", []))
        tainted = any(t["key"].startswith("node.kubernetes.io/") for t in body["spec"].get("taints", []))
        return ready and not tainted

    def log_tail(self, component: str, lines: int = 30) -> str:
        return tail(self.paths.logs / f"{component}.log", lines)


def _archive_names(archive: Path) -> set[str]:
    """The image names (RepoTags) a docker-archive carries, from its manifest.json."""
    import tarfile

    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    return {tag for entry in manifest for tag in entry.get("RepoTags") or []}


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    targets = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4]
        if target.startswith(prefix) or target == prefix[:-1]:
            targets.append(target)
    return targets

