"""The addresses and names of one real node on this machine, and the egress guard that keeps every
packet to them on it. Pure: hostnet.py applies what is described here.

A real node occupies a *slot* (1-31), so that several clusters (``make cluster`` and a test run)
can live side by side. Everything of slot k is private to this machine:

  node link    10.250.k.0/24  a veth pair: ``conch-k`` (host, 10.250.k.1) <-> ``eth0`` in the
                              node's network namespace ``conch-node-k`` (10.250.k.2). The API
                              server listens on, and advertises, the host end.
  pods         10.244.k.0/24  the node's CNI bridge ``cni0`` (10.244.k.1) inside that namespace
  services     10.96.k.0/24   ClusterIPs; kube-proxy's rules live inside that namespace
  fake pods    10.245.k.0/24  the IPs kwok gives the pods of its fake (GPU) nodes; never routed

The host routes the pod and service ranges into the node's namespace; the namespace has no default
route, so nothing inside it can reach past this machine. On top of that, a mangle POSTROUTING
chain drops (and counts) any packet to or from these ranges that would leave through an interface
other than loopback and the project's own veths: the uplink.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

SLOTS = range(1, 32)
NETNS_PREFIX = "conch-node-"
HOST_IF_PREFIX = "conch-"
GUARD_CHAIN_PREFIX = "CONCH-GUARD-"
GUARD_COMMENT = "conch egress guard"
CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class NodeNetwork:
    slot: int

    def __post_init__(self):
        if self.slot not in SLOTS:
            raise ValueError(f"slot {self.slot} outside {SLOTS.start}..{SLOTS.stop - 1}")

    # ------------------------------------------------------------------ names

    @property
    def netns(self) -> str:
        return f"{NETNS_PREFIX}{self.slot}"

    @property
    def host_if(self) -> str:
        return f"{HOST_IF_PREFIX}{self.slot}"

    @property
    def peer_if(self) -> str:
        """The node end's name until it is moved into the namespace and renamed eth0."""
        return f"{HOST_IF_PREFIX}{self.slot}p"

    node_if = "eth0"
    bridge = "cni0"

    @property
    def guard_chain(self) -> str:
        return f"{GUARD_CHAIN_PREFIX}{self.slot}"

    # ------------------------------------------------------------------ ranges

    @property
    def link_cidr(self) -> str:
        return f"10.250.{self.slot}.0/24"

    @property
    def host_ip(self) -> str:
        return f"10.250.{self.slot}.1"

    @property
    def node_ip(self) -> str:
        return f"10.250.{self.slot}.2"

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{self.slot}.0/24"

    @property
    def pod_gateway(self) -> str:
        return f"10.244.{self.slot}.1"

    @property
    def service_cidr(self) -> str:
        return f"10.96.{self.slot}.0/24"

    @property
    def apiserver_service_ip(self) -> str:
        """The `kubernetes` Service's ClusterIP: the first address of the service range."""
        return str(ipaddress.ip_network(self.service_cidr)[1])

    @property
    def fake_pod_cidr(self) -> str:
        return f"10.245.{self.slot}.0/24"

    @property
    def dns_ip(self) -> str:
        """CoreDNS listens on the node's own address (it runs next to the kubelet)."""
        return self.node_ip

    def guarded_ranges(self) -> dict[str, str]:
        return {"pods": self.pod_cidr, "services": self.service_cidr, "node link": self.link_cidr,
                "fake pods": self.fake_pod_cidr}

    def host_routes(self) -> list[tuple[str, str]]:
        """(destination, via): what the host sends into the node's namespace."""
        return [(self.pod_cidr, self.node_ip), (self.service_cidr, self.node_ip)]


def guard_rules(net: NodeNetwork) -> list[list[str]]:
    """The guard chain's rules (arguments after ``iptables -t mangle -A <chain>``).

    The chain is entered for every packet leaving through a non-loopback interface; the project's
    own veths return early, every other interface is the way off this machine.
    """
    rules = [["-o", f"{HOST_IF_PREFIX}+", "-j", "RETURN"]]
    for what, cidr in net.guarded_ranges().items():
        for direction in ("-d", "-s"):
            rules.append([direction, cidr, "-m", "comment", "--comment", f"{GUARD_COMMENT}: {what}", "-j", "DROP"])
    return rules


def guard_hook(net: NodeNetwork) -> list[str]:
    """The POSTROUTING rule that sends leaving packets through the slot's guard chain."""
    return ["!", "-o", "lo", "-m", "comment", "--comment", f"{GUARD_COMMENT} slot {net.slot}", "-j", net.guard_chain]


def parse_guard_counters(listing: str) -> dict[str, int]:
    """Packets dropped per guarded range, from ``iptables -t mangle -L <chain> -n -v -x``."""
    drops: dict[str, int] = {}
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) < 3 or not fields[0].isdigit() or fields[2] != "DROP":
            continue
        marker = f"/* {GUARD_COMMENT}: "
        if marker in line:
            what = line.split(marker, 1)[1].split(" */", 1)[0]
            drops[what] = drops.get(what, 0) + int(fields[0])
    return drops
