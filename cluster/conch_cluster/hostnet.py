"""The host side of a real node's network (network.py describes it): claiming a slot, the node's
network namespace and veth pair, the host's routes into it, the egress guard, and taking all of it
down again. Needs root (CAP_NET_ADMIN); uses the standard `ip` and `iptables` tools."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from .errors import ClusterError
from .network import SLOTS, NodeNetwork, guard_hook, guard_rules, parse_guard_counters
from .processes import proc_start_time

CLAIMS = Path("/run/conch/slots")
NETNS_DIR = Path("/run/netns")


def require_tools() -> None:
    missing = [t for t in ("ip", "iptables", "nsenter") if shutil.which(t) is None]
    if missing:
        raise ClusterError(f"a real node needs {', '.join(missing)} (make tools installs them)")
    if os.geteuid() != 0:
        raise ClusterError("a real node needs root (network namespaces, mounts, cgroups)")


def _run(*argv: str, check: bool = True, netns: str | None = None) -> subprocess.CompletedProcess:
    if netns:
        argv = ("ip", "netns", "exec", netns, *argv)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode:
        raise ClusterError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


# ---------------------------------------------------------------------------------------------- slots


def claim_slot(owner: str) -> NodeNetwork:
    """The first free slot, claimed for ``owner`` (a state dir). A claim whose holder process is
    gone and whose owner is not this one is stale: its leftovers are removed and the slot reused."""
    CLAIMS.mkdir(parents=True, exist_ok=True)
    for slot in SLOTS:
        net = NodeNetwork(slot)
        claim = CLAIMS / f"{slot}.json"
        held = read_claim(slot)
        if held is not None and (held.get("owner") == owner or not _holder_alive(held)):
            teardown(net)  # a crashed run's leftovers, or our own previous run
        elif held is not None or (NETNS_DIR / net.netns).exists():
            continue
        try:
            fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({"owner": owner, "pid": os.getpid(), "start_time": proc_start_time(os.getpid())}, f)
        return net
    raise ClusterError(f"no free node slot in {CLAIMS} (slots {SLOTS.start}-{SLOTS.stop - 1} are taken)")


def read_claim(slot: int) -> dict | None:
    try:
        return json.loads((CLAIMS / f"{slot}.json").read_text())
    except (OSError, ValueError):
        return None


def hold_claim(net: NodeNetwork, pid: int) -> None:
    """The process whose life keeps the slot claimed (the node's init, which outlives `up`)."""
    claim = read_claim(net.slot) or {}
    claim.update(pid=pid, start_time=proc_start_time(pid))
    tmp = CLAIMS / f".{net.slot}.json.tmp"
    tmp.write_text(json.dumps(claim))
    tmp.replace(CLAIMS / f"{net.slot}.json")


def claimed_by(owner: str) -> list[NodeNetwork]:
    return [NodeNetwork(s) for s in SLOTS if (read_claim(s) or {}).get("owner") == owner]


def _holder_alive(claim: dict) -> bool:
    pid, start = claim.get("pid"), claim.get("start_time")
    return bool(pid) and proc_start_time(pid) is not None and proc_start_time(pid) == start


# ---------------------------------------------------------------------------------------------- setup


def create(net: NodeNetwork) -> None:
    """The node's namespace, the veth pair between it and the host, addresses, routes, the guard."""
    require_tools()
    _run("ip", "netns", "add", net.netns)
    _run("ip", "link", "add", net.host_if, "type", "veth", "peer", "name", net.peer_if)
    _run("ip", "link", "set", net.peer_if, "netns", net.netns)
    _run("ip", "link", "set", net.peer_if, "name", net.node_if, netns=net.netns)
    prefix = net.link_cidr.split("/")[1]
    _run("ip", "addr", "add", f"{net.host_ip}/{prefix}", "dev", net.host_if)
    _run("ip", "link", "set", net.host_if, "up")
    _run("ip", "addr", "add", f"{net.node_ip}/{prefix}", "dev", net.node_if, netns=net.netns)
    _run("ip", "link", "set", net.node_if, "up", netns=net.netns)
    _run("ip", "link", "set", "lo", "up", netns=net.netns)
    # Inside the node: forward between the veth and the pods' bridge. The host itself forwards
    # nothing (its own traffic to pods is local output, not forwarding).
    _run("sysctl", "-qw", "net.ipv4.ip_forward=1", netns=net.netns)
    _run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", netns=net.netns)
    for destination, via in net.host_routes():
        _run("ip", "route", "add", destination, "via", via, "dev", net.host_if)
    install_guard(net)


def install_guard(net: NodeNetwork) -> None:
    remove_guard(net)
    _run("iptables", "-w", "-t", "mangle", "-N", net.guard_chain)
    for rule in guard_rules(net):
        _run("iptables", "-w", "-t", "mangle", "-A", net.guard_chain, *rule)
    _run("iptables", "-w", "-t", "mangle", "-I", "POSTROUTING", *guard_hook(net))


def guard_drops(net: NodeNetwork) -> dict[str, int]:
    """Packets the guard dropped, per range (all zero unless something tried to leave)."""
    listing = _run("iptables", "-w", "-t", "mangle", "-L", net.guard_chain, "-n", "-v", "-x").stdout
    return parse_guard_counters(listing)


def guard_installed(net: NodeNetwork) -> bool:
    hooked = _run("iptables", "-w", "-t", "mangle", "-C", "POSTROUTING", *guard_hook(net), check=False)
    return hooked.returncode == 0


# ---------------------------------------------------------------------------------------------- teardown


def remove_guard(net: NodeNetwork) -> None:
    while _run("iptables", "-w", "-t", "mangle", "-D", "POSTROUTING", *guard_hook(net), check=False).returncode == 0:
        pass
    if _run("iptables", "-w", "-t", "mangle", "-L", net.guard_chain, "-n", check=False).returncode == 0:
        _run("iptables", "-w", "-t", "mangle", "-F", net.guard_chain, check=False)
        _run("iptables", "-w", "-t", "mangle", "-X", net.guard_chain, check=False)


def netns_pids(net: NodeNetwork) -> list[int]:
    """Processes still inside the node's network namespace."""
    try:
        target = os.stat(NETNS_DIR / net.netns)
    except OSError:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            st = os.stat(entry / "ns" / "net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            pids.append(int(entry.name))
    return pids


def teardown(net: NodeNetwork, timeout: float = 15.0) -> None:
    """Everything of the slot on the host: processes left in its namespace, the namespace (which
    takes the veth pair and the host's routes through it along), the guard, its cgroups and claim."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in netns_pids(net):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 5.0)
        while netns_pids(net) and time.monotonic() < deadline:
            time.sleep(0.1)
    if (NETNS_DIR / net.netns).exists():
        _run("ip", "netns", "del", net.netns, check=False)
    if Path(f"/sys/class/net/{net.host_if}").exists():
        _run("ip", "link", "del", net.host_if, check=False)
    remove_guard(net)
    remove_cgroups(cgroup_root(net))
    (CLAIMS / f"{net.slot}.json").unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- cgroups

CGROUP_FS = Path("/sys/fs/cgroup")


def cgroup_root(net: NodeNetwork) -> str:
    """The kubelet's --cgroup-root: the node's pods live below it in every hierarchy."""
    return f"/conch-node-{net.slot}"


def hierarchies() -> list[Path]:
    """Mounted cgroup hierarchies (v1 controllers, named ones, and the v2 one of a hybrid setup)."""
    mounts = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, target, fstype, *_ = line.split()
        if fstype in ("cgroup", "cgroup2") and target.startswith(str(CGROUP_FS)):
            mounts.append(Path(target))
    return mounts


def create_cgroups(root: str) -> None:
    """The cgroup root in every hierarchy (the kubelet refuses a root that does not exist)."""
    for hierarchy in hierarchies():
        path = hierarchy / root.lstrip("/")
        path.mkdir(exist_ok=True)
        # A cpuset cgroup without cpus/mems accepts no task: inherit the parent's.
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (path / knob).exists() and not (path / knob).read_text().strip():
                (path / knob).write_text((hierarchy / knob).read_text())


def remove_cgroups(root: str, timeout: float = 10.0) -> list[Path]:
    """rmdir the cgroup tree below ``root`` in every hierarchy, deepest first; returns what is left
    (a cgroup is only removable once its last task has exited)."""
    deadline = time.monotonic() + timeout
    left: list[Path] = []
    for hierarchy in hierarchies():
        top = hierarchy / root.lstrip("/")
        if not top.is_dir():
            continue
        while True:
            left = []
            for path in sorted((p for p in [top, *top.rglob("*")] if p.is_dir()),
                               key=lambda p: len(p.parts), reverse=True):
                try:
                    path.rmdir()
                except OSError as e:
                    if e.errno != errno.ENOENT:
                        left.append(path)
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    return left
