"""`make cluster` / `make cluster-down`: the local cluster with a real node and Conch installed by its
chart starts in the background, prints the KUBECONFIG export last, and the README's flow works for
real — `kubectl apply -f examples/smollm2-cpu.yaml` → the Model turns Ready when its pod is →
http://127.0.0.1:<port> answers with that pod's tokens. `down` then removes every process, mount,
network namespace, interface, route, iptables rule and cgroup the cluster made, and a second
up/down cycle works."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conch_cluster import ControlPlane
from conch_cluster.network import NodeNetwork
from conch_cluster.processes import find_owned
from support import REPO_ROOT, free_port
from support.k8s import wait_until

pytestmark = pytest.mark.k8s

EXAMPLE = REPO_ROOT / "examples" / "smollm2-cpu.yaml"


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "conch_cluster", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout)


def leftovers(net: NodeNetwork, state: Path) -> list[str]:
    """Whatever of the cluster is still on the machine."""
    found = [f"process {pid}" for pid in find_owned(str(state.resolve()))]
    if net.netns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout:
        found.append(f"network namespace {net.netns}")
    if Path(f"/sys/class/net/{net.host_if}").exists():
        found.append(f"interface {net.host_if}")
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    found += [f"route {r}" for r in routes.splitlines() if r.split()[0] in (net.pod_cidr, net.service_cidr, net.link_cidr)]
    rules = subprocess.run(["iptables", "-w", "-t", "mangle", "-S"], capture_output=True, text=True).stdout
    found += [f"iptables {r}" for r in rules.splitlines() if net.guard_chain in r]
    found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob(f"*/conch-node-{net.slot}")]
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    found += [f"mount {m.split()[4]}" for m in mounts if str(state.resolve()) in m.split()[4]]
    if Path(f"/run/conch/slots/{net.slot}.json").exists():
        found.append(f"slot claim {net.slot}")
    return found


def up(state: Path, port: int) -> ControlPlane:
    started = cli("up", "--with-conch", "--state-dir", str(state), "--gateway-port", str(port))
    assert started.returncode == 0, started.stderr
    last = started.stdout.strip().splitlines()[-1]
    assert last.startswith("export KUBECONFIG=")
    plane = ControlPlane.attach(state)
    assert str(plane.kubeconfig) == last.split("=", 1)[1].strip("'")
    return plane


def api_key(plane: ControlPlane) -> str:
    found = plane.kubectl("-n", "conch", "get", "secret", "conch-admin-key", "-o", "jsonpath={.data.key}", check=False)
    return base64.b64decode(found.stdout).decode() if found.returncode == 0 and found.stdout else "unused"


def test_make_cluster_serves_the_example_through_the_ingress_and_cleans_up(tmp_path):
    state = tmp_path / "stack"
    port = free_port()
    plane = up(state, port)
    net = plane.network
    try:
        nodes = json.loads(plane.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        real = [n for n in nodes if "kwok.x-k8s.io/node" not in n["metadata"].get("annotations", {})]
        assert [n["metadata"]["name"] for n in real] == ["conch-node"]
        assert {a["address"] for a in real[0]["status"]["addresses"] if a["type"] == "InternalIP"} == {net.node_ip}
        # The README's flow: apply the example, wait for Ready, ask through the printed URL.
        plane.kubectl("apply", "-f", str(EXAMPLE))
        phase = "jsonpath={.status.phase}"
        wait_until(lambda: plane.kubectl("get", "model", "smollm2", "-o", phase).stdout == "Ready", 180,
                   interval=1, message="the example Ready")
        headers = {"Authorization": f"Bearer {api_key(plane)}"}
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", headers=headers, timeout=120, json={
            "model": "smollm2", "max_tokens": 16, "temperature": 0,
            "messages": [{"role": "user", "content": "What is the capital of France?"}]})
        assert answer.status_code == 200 and "Paris" in answer.json()["choices"][0]["message"]["content"]
        pod = json.loads(plane.kubectl("get", "pods", "-l", "conch.dev/model=smollm2", "-o", "json").stdout)["items"][0]
        assert pod["spec"]["nodeName"] == "conch-node" and pod["status"]["podIP"].startswith(net.pod_cidr.rsplit(".", 2)[0])
    finally:
        down = cli("down", "--state-dir", str(state), timeout=180)
    assert down.returncode == 0, down.stderr
    assert leftovers(net, state) == []
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)

    # A second cycle on the same machine (and state directory) works.
    plane = up(state, port)
    try:
        assert plane.network.slot == net.slot
        listed = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {api_key(plane)}"},
                           timeout=10)
        assert listed.status_code == 200 and listed.json()["data"] == []
    finally:
        down = cli("down", "--state-dir", str(state), timeout=180)
    assert down.returncode == 0, down.stderr
    assert leftovers(plane.network, state) == []


def test_down_cleans_up_after_a_lost_state_file(tmp_path):
    """A crashed launcher that lost state.json: `down` still finds the node's slot by its owner, and
    the processes by their owner tag, and removes them."""
    state = tmp_path / "crashed"
    started = cli("up", "--real-node", "--state-dir", str(state))
    assert started.returncode == 0, started.stderr
    net = ControlPlane.attach(state).network
    (state / "state.json").unlink()
    down = cli("down", "--state-dir", str(state), timeout=180)
    assert down.returncode == 0, down.stderr
    assert leftovers(net, state) == []
