"""Command lines of the components (pure functions, so they are easy to review/test)."""

from __future__ import annotations

from pathlib import Path

from .nodes import KWOK_ANNOTATION
from .pki import FRONT_PROXY_CLIENT, Pki

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
POD_CIDR = "10.244.0.0/16"


def etcd(b: Path, data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    client = f"http://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    return [
        str(b / "etcd"),
        "--name=conch",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=conch={peer}",
        "--unsafe-no-fsync=true",  # test data on tmpfs; durability is irrelevant
        "--log-level=warn",
    ]


def kube_apiserver(b: Path, p: Pki, port: int, etcd_port: int, *, bind: str = "127.0.0.1",
                   advertise: str | None = None, service_cidr: str = SERVICE_CIDR) -> list[str]:
    """``advertise`` (the `kubernetes` Service's endpoint, what pods connect to) must be an address
    the API server listens on; without one (no real node, nothing inside the cluster connects) the
    API server publishes no endpoint at all."""
    published = (
        [f"--advertise-address={advertise}", "--endpoint-reconciler-type=lease"]
        if advertise
        # Still required by the flag parser (a non-loopback IP), but never published anywhere.
        else ["--advertise-address=10.255.255.254", "--endpoint-reconciler-type=none"]
    )
    return [
        str(b / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        f"--bind-address={bind}",
        f"--secure-port={port}",
        *published,
        f"--tls-cert-file={p.apiserver.cert}",
        f"--tls-private-key-file={p.apiserver.key}",
        f"--client-ca-file={p.ca.cert}",
        "--authorization-mode=Node,RBAC",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={p.sa_pub}",
        f"--service-account-signing-key-file={p.sa_key}",
        f"--service-cluster-ip-range={service_cidr}",
        "--allow-privileged=true",
        # Request-header auth: KCM/scheduler read this CA from the
        # extension-apiserver-authentication ConfigMap and log errors when it is missing;
        # aggregated APIs (e.g. metrics) need it too.
        f"--requestheader-client-ca-file={p.front_proxy_ca.cert}",
        f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={p.front_proxy_client.cert}",
        f"--proxy-client-key-file={p.front_proxy_client.key}",
        # logs/exec/port-forward: to a real kubelet by its InternalIP, with a client cert it trusts.
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        f"--kubelet-client-certificate={p.clients['apiserver-kubelet-client'].cert}",
        f"--kubelet-client-key={p.clients['apiserver-kubelet-client'].key}",
        "--profiling=false",
    ]


def _controller_common(p: Pki, port: int, kubeconfig: Path) -> list[str]:
    return [
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={p.loopback.cert}",
        f"--tls-private-key-file={p.loopback.key}",
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--leader-elect=false",
        "--profiling=false",
        # Default client rate limits (20 qps) serialise KCM's per-controller token
        # requests at startup (~5 s) and throttle bursts of test objects.
        "--kube-api-qps=200",
        "--kube-api-burst=400",
    ]


def kube_controller_manager(b: Path, p: Pki, port: int, kubeconfig: Path) -> list[str]:
    return [
        str(b / "kube-controller-manager"),
        *_controller_common(p, port, kubeconfig),
        # Per-controller service accounts, as kubeadm does: real RBAC for controllers.
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={p.sa_key}",
        f"--root-ca-file={p.ca.cert}",
        f"--cluster-signing-cert-file={p.ca.cert}",
        f"--cluster-signing-key-file={p.ca.key}",
        # kwok renews node leases, but a long grace period keeps fake nodes from ever
        # being marked NotReady/evicted while the host is loaded (e.g. during builds).
        "--node-monitor-grace-period=1h",
    ]


def kube_scheduler(b: Path, p: Pki, port: int, kubeconfig: Path) -> list[str]:
    return [str(b / "kube-scheduler"), *_controller_common(p, port, kubeconfig)]


def kwok(b: Path, kubeconfig: Path, stages: Path, port: int, pod_cidr: str = POD_CIDR) -> list[str]:
    return [
        str(b / "kwok"),
        f"--kubeconfig={kubeconfig}",
        f"--config={stages}",
        # Only nodes we annotate: a plane shared with real nodes would stay intact.
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={'='.join(KWOK_ANNOTATION)}",
        # apiserver->"kubelet" traffic (logs/exec) goes to the node IP: keep it loopback.
        "--node-ip=127.0.0.1",
        f"--cidr={pod_cidr}",
        "--node-lease-duration-seconds=40",
        f"--server-address=127.0.0.1:{port}",
    ]
