"""Configuration of a real node's components: containerd, the CNI network, the kubelet, kube-proxy
and CoreDNS, and the command lines that start them. Pure functions of the node's paths and network.

Every choice here keeps the node inside what it owns: its own containerd state and socket, its own
cgroup root, no host-wide sysctl changes (conntrack sizing, oom_score_adj), and DNS that answers
the cluster's names and nothing else (no upstream forwarding: no query leaves the machine).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from .network import CLUSTER_DOMAIN, NodeNetwork

NODE_NAME = "conch-node"
PAUSE_IMAGE = "conch.local/pause:3.10"
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
KUBELET_PORT = 10250
KUBE_PROXY_HEALTH_PORT = 10256
COREDNS_READY_PORT = 8181
NODE_LABEL = ("conch.dev/node", "real")

# The values the kubelet insists on for these kernel settings (it rewrites them otherwise). Inside
# the node's mount namespace they are bind-mounted read-only, so the host's own values stay.
KUBELET_SYSCTLS = {"vm/overcommit_memory": "1", "vm/panic_on_oom": "0", "kernel/panic": "10",
                   "kernel/panic_on_oops": "1", "kernel/keys/root_maxkeys": "1000000",
                   "kernel/keys/root_maxbytes": "25000000"}


@dataclass(frozen=True)
class NodePaths:
    """Where one node keeps its files: ``root`` on disk (configuration, state, logs) and
    ``image_store``, containerd's root (image content and unpacked layers), which outlives the node
    so that a restarted node finds its images unpacked. Nothing under the host's /run, /var/lib or
    /var/log, which the node's mount namespace replaces."""

    root: Path
    image_store: Path

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def containerd_root(self) -> Path:
        return self.image_store

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd-state"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.config / "cni"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def var_log(self) -> Path:
        """Mounted as the node's /var/log (the kubelet writes pod logs to /var/log/pods)."""
        return self.root / "var-log"

    @property
    def resolv_conf(self) -> Path:
        return self.config / "resolv.conf"

    @property
    def sysctls(self) -> Path:
        return self.config / "sysctl"


def containerd_config(paths: NodePaths) -> str:
    plugins_off = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                   "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
                   "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp",
                   "io.containerd.internal.v1.tracing"]
    cni_bin = next((d for d in CNI_BIN_DIRS if Path(d, "bridge").exists()), CNI_BIN_DIRS[0])
    return f"""version = 2
root = "{paths.containerd_root}"
state = "{paths.containerd_state}"
oom_score = 0
disabled_plugins = {json.dumps(plugins_off)}

[grpc]
  address = "{paths.containerd_socket}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # Lowering a process's oom_score_adj needs CAP_SYS_RESOURCE, which this machine does not grant:
  # without this every pod sandbox fails ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{paths.cni_conf_dir}"
    max_conf_num = 1
"""


def cni_config(net: NodeNetwork) -> dict:
    """bridge + host-local + portmap (hostPorts, used by the ingress controller); containerd sets
    up each pod's loopback itself."""
    return {
        "cniVersion": "1.0.0",
        "name": "conch",
        "plugins": [
            {"type": "bridge", "bridge": net.bridge, "isGateway": True, "ipMasq": False, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": net.pod_cidr, "gateway": net.pod_gateway}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(net: NodeNetwork, paths: NodePaths, ca: Path, cgroup_root: str) -> dict:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": net.node_ip,
        "port": KUBELET_PORT,
        "healthzBindAddress": "127.0.0.1",
        "readOnlyPort": 0,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(ca)}},
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "imageServiceEndpoint": f"unix://{paths.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "cgroupsPerQOS": True,
        "failCgroupV1": False,  # this machine's cgroups are v1 (hybrid)
        "failSwapOn": False,
        "clusterDNS": [net.dns_ip],
        "clusterDomain": CLUSTER_DOMAIN,
        # Pods get the cluster's DNS and search path only, never the host's resolvers.
        "resolvConf": str(paths.resolv_conf),
        "oomScoreAdj": 0,  # lowering it needs CAP_SYS_RESOURCE
        "protectKernelDefaults": False,
        "serializeImagePulls": False,
        # Images are imported, not pulled: never garbage-collect them, never evict over a shared
        # machine's disk usage (the thresholds still guard memory).
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "podLogsDir": "/var/log/pods",
        "maxPods": 110,
        "shutdownGracePeriod": "0s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "nodeStatusUpdateFrequency": "5s",
    }


def kube_proxy_config(net: NodeNetwork, kubeconfig: Path) -> dict:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "hostnameOverride": NODE_NAME,
        "bindAddress": net.node_ip,
        "clusterCIDR": net.pod_cidr,
        "healthzBindAddress": f"{net.node_ip}:{KUBE_PROXY_HEALTH_PORT}",
        "metricsBindAddress": "127.0.0.1:10249",
        "nodePortAddresses": [f"{net.node_ip}/32"],
        "oomScoreAdj": 0,
        # 0: leave conntrack's table size and timeouts alone (they are host-wide settings).
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "iptables": {"syncPeriod": "10s", "minSyncPeriod": "0s"},
    }


def corefile(net: NodeNetwork, kubeconfig: Path) -> str:
    """Answers the cluster's names (and their reverse lookups), nothing else: no `forward`, so no
    query ever goes to the host's resolvers."""
    return f""".:53 {{
    bind {net.dns_ip}
    errors
    ready {net.dns_ip}:{COREDNS_READY_PORT}
    health 127.0.0.1:8080
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        ttl 5
    }}
    cache 5
    loadbalance
}}
"""


def resolv_conf() -> str:
    """The node's "host" resolver file: empty of servers, so pods only ever see the cluster DNS."""
    return "# conch node: no upstream resolvers (pods use the cluster DNS only)\noptions ndots:5\n"


def coredns_rbac() -> list[dict]:
    """What CoreDNS's kubernetes plugin reads, for the user of its client certificate."""
    rules = [{"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
              "verbs": ["list", "watch"]},
             {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}]
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "system:coredns"}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "system:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:coredns"}]},
    ]


def commands(bins: Path, net: NodeNetwork, paths: NodePaths, kubeconfigs: dict[str, Path]) -> list[dict]:
    """The node's processes, in start order: (name, argv)."""
    return [
        {"name": "containerd", "argv": ["containerd", "--config", str(paths.config / "containerd.toml")]},
        {"name": "kubelet", "argv": [
            str(bins / "kubelet"), f"--config={paths.config / 'kubelet.yaml'}",
            f"--kubeconfig={kubeconfigs['kubelet']}", f"--hostname-override={NODE_NAME}",
            f"--node-ip={net.node_ip}", f"--node-labels={'='.join(NODE_LABEL)}", "--v=1"]},
        {"name": "kube-proxy", "argv": [str(bins / "kube-proxy"), f"--config={paths.config / 'kube-proxy.yaml'}",
                                        "--v=1"]},
        {"name": "coredns", "argv": [str(bins / "coredns"), "-conf", str(paths.config / "Corefile")]},
    ]


def write_all(bins: Path, net: NodeNetwork, paths: NodePaths, ca: Path, kubeconfigs: dict[str, Path],
              cgroup_root: str) -> list[dict]:
    """Writes every configuration file; returns the commands."""
    for d in (paths.config, paths.cni_conf_dir, paths.logs, paths.var_log, paths.sysctls, paths.containerd_root,
              paths.containerd_state):
        d.mkdir(parents=True, exist_ok=True)
    (paths.config / "containerd.toml").write_text(containerd_config(paths))
    (paths.cni_conf_dir / "10-conch.conflist").write_text(json.dumps(cni_config(net), indent=2))
    (paths.config / "kubelet.yaml").write_text(yaml.safe_dump(kubelet_config(net, paths, ca, cgroup_root)))
    (paths.config / "kube-proxy.yaml").write_text(yaml.safe_dump(kube_proxy_config(net, kubeconfigs["kube-proxy"])))
    (paths.config / "Corefile").write_text(corefile(net, kubeconfigs["coredns"]))
    paths.resolv_conf.write_text(resolv_conf())
    for name, value in KUBELET_SYSCTLS.items():
        (paths.sysctls / name.replace("/", ".")).write_text(value + "\n")
    return commands(bins, net, paths, kubeconfigs)
