#!/usr/bin/env python3
"""End-to-end smoke test of conch_cluster (not part of the pytest suite).

    python cluster/smoke_test.py [--skip-cli]

Starts a plane, checks versions, Deployment rollout on CPU nodes (kwok makes pods
Ready), GPU scheduling onto gpu-l4-0, garbage collection, CRD CEL validation, then stops
and verifies nothing is left; finally does the same round trip through the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conch_cluster import ControlPlane, KubectlError
from conch_cluster.processes import OWNER_ENV, find_owned
from conch_cluster.toolchain import pinned_version

GPU_POD = """
apiVersion: v1
kind: Pod
metadata: {name: gpu-test, namespace: default}
spec:
  nodeSelector: {nvidia.com/gpu.product: NVIDIA-L4}
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
  containers:
  - name: main
    image: registry.invalid/conch/dummy:1
    resources: {limits: {nvidia.com/gpu: 1}}
"""

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.smoke.conch.dev}
spec:
  group: smoke.conch.dev
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              minReplicas: {type: integer}
              maxReplicas: {type: integer}
            x-kubernetes-validations:
            - rule: self.minReplicas <= self.maxReplicas
              message: minReplicas must not exceed maxReplicas
"""

WIDGET = """
apiVersion: smoke.conch.dev/v1
kind: Widget
metadata: {{name: {name}, namespace: default}}
spec: {{minReplicas: {lo}, maxReplicas: {hi}}}
"""


CHART = {
    "Chart.yaml": "apiVersion: v2\nname: smoke\nversion: 0.1.0\nkubeVersion: '>=1.34.0-0'\n",
    "templates/cm.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: helm-smoke}\n"
        "data: {kube: '{{ .Capabilities.KubeVersion.Version }}'}\n"
    ),
}


def step(msg: str) -> None:
    print(f"[smoke] {msg}", flush=True)


def poll(what: str, fn, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def leftover_processes(tmp: Path) -> list[int]:
    """Processes tagged with any state dir under ``tmp``; other planes (e.g. a parallel
    test run) on the same machine are not ours to judge."""
    owners = set()
    for p in Path("/proc").iterdir():
        try:
            env = (p / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        owners.update(e for e in env if e.startswith(f"{OWNER_ENV}={tmp}".encode()))
    return [pid for o in owners for pid in find_owned(o.decode().split("=", 1)[1])]


def check_plane(cp: ControlPlane) -> None:
    want = pinned_version()
    v = json.loads(cp.kubectl("version", "-o", "json").stdout)
    assert v["serverVersion"]["gitVersion"] == want, v
    assert v["clientVersion"]["gitVersion"] == want, v
    step(f"server and kubectl report {want}")

    nodes = json.loads(cp.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    by_name = {n["metadata"]["name"]: n for n in nodes}
    assert set(by_name) == {"cpu-0", "cpu-1", "gpu-a100-0", "gpu-l4-0"}, set(by_name)
    assert by_name["gpu-a100-0"]["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    assert by_name["gpu-l4-0"]["status"]["capacity"]["nvidia.com/gpu"] == "4"
    taints = {n: by_name[n]["spec"].get("taints") for n in ("cpu-0", "cpu-1")}
    assert not any(taints.values()), f"CPU nodes must be untainted: {taints}"
    step("4 fake nodes Ready with expected GPU capacity")

    cp.kubectl(
        "create", "deployment", "dummy", "--image=registry.invalid/conch/dummy:1", "--replicas=2"
    )
    cp.kubectl("rollout", "status", "deployment/dummy", "--timeout=90s")
    pods = json.loads(cp.kubectl("get", "pods", "-l", "app=dummy", "-o", "json").stdout)["items"]
    placed = sorted(p["spec"]["nodeName"] for p in pods)
    assert len(pods) == 2 and all(n.startswith("cpu-") for n in placed), placed
    step(f"Deployment 2/2 ready on {placed}")

    cp.kubectl("apply", "-f", "-", input=GPU_POD)
    cp.kubectl("wait", "--for=condition=Ready", "pod/gpu-test", "--timeout=60s")
    node = cp.kubectl("get", "pod", "gpu-test", "-o", "jsonpath={.spec.nodeName}").stdout
    assert node == "gpu-l4-0", node
    step("GPU pod scheduled onto gpu-l4-0 and Ready")

    cp.kubectl("delete", "deployment", "dummy")
    poll(
        "GC of the Deployment's pods",
        lambda: (
            not cp.kubectl(
                "get", "pods,replicasets", "-l", "app=dummy", "-o", "name"
            ).stdout.strip()
        ),
    )
    step("Deployment deleted; garbage collector removed ReplicaSet and pods")

    cp.kubectl("apply", "-f", "-", input=CRD)
    cp.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.smoke.conch.dev", "--timeout=30s"
    )
    cp.kubectl("apply", "-f", "-", input=WIDGET.format(name="ok", lo=1, hi=3))
    try:
        cp.kubectl("apply", "-f", "-", input=WIDGET.format(name="bad", lo=5, hi=1))
    except KubectlError as e:
        assert "minReplicas must not exceed maxReplicas" in e.stderr, e.stderr
    else:
        raise AssertionError("invalid Widget was accepted")
    step("CRD CEL rule rejects the invalid object")

    with tempfile.TemporaryDirectory(prefix="conch-helm-") as d:
        for name, text in CHART.items():
            (Path(d) / "chart" / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(d) / "chart" / name).write_text(text)
        env = cp.env()
        env.update({f"HELM_{k}_HOME": f"{d}/{k.lower()}" for k in ("CACHE", "CONFIG", "DATA")})
        subprocess.run(
            ["helm", "install", "smoke", f"{d}/chart", "--wait", "--timeout=60s"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
    kube = cp.kubectl("get", "configmap", "helm-smoke", "-o", "jsonpath={.data.kube}").stdout
    assert kube == pinned_version(), kube  # chart kubeVersion constraint met, live version
    step(f"helm install against the plane ok (Capabilities.KubeVersion {kube})")


def library_round_trip(state_dir: Path) -> Path:
    cp = ControlPlane(state_dir)
    cp.start()
    step(f"start() took {cp.startup_seconds:.1f}s ({cp.server})")
    pids = [c.pid for c in cp.components.values()]
    runtime_dir = cp.runtime_dir
    try:
        check_plane(cp)
    finally:
        t = time.monotonic()
        cp.stop()
        step(f"stop() took {time.monotonic() - t:.1f}s")
    alive = [p for p in pids if Path(f"/proc/{p}").exists()]
    assert not alive, f"processes left: {alive}"
    assert not runtime_dir.exists(), f"{runtime_dir} not removed"
    return cp.bin_dir


def cli_round_trip(state_dir: Path, bin_dir: Path) -> None:
    cli = [sys.executable, "-m", "conch_cluster"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*cli, *args, "--state-dir", str(state_dir)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    t = time.monotonic()
    up = run("up")
    assert up.returncode == 0, up.stderr
    last = up.stdout.strip().splitlines()[-1]
    assert last.startswith("export KUBECONFIG="), up.stdout
    step(f"CLI up took {time.monotonic() - t:.1f}s: {last}")
    kubeconfig = last.split("=", 1)[1]
    nodes = subprocess.run(
        [str(bin_dir / "kubectl"), f"--kubeconfig={kubeconfig}", "get", "nodes", "-o", "name"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(nodes.stdout.split()) == 4, nodes.stdout
    assert run("status").returncode == 0
    again = run("up")  # idempotent: reports the running plane
    assert again.returncode == 0 and again.stdout.strip().endswith(kubeconfig), again
    t = time.monotonic()
    down = run("down")
    assert down.returncode == 0, down.stderr
    step(f"CLI down took {time.monotonic() - t:.1f}s")
    assert run("status").returncode == 1
    stale = run("down")
    assert stale.returncode == 0 and "nothing to stop" in stale.stderr, stale.stderr
    assert not Path(kubeconfig).exists()
    step("CLI up/status/down round trip ok (second down is a no-op)")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="conch-smoke-") as tmp:
        tmp = Path(tmp).resolve()
        bin_dir = library_round_trip(tmp / "lib")
        if "--skip-cli" not in sys.argv:
            cli_round_trip(tmp / "cli", bin_dir)
        left = leftover_processes(tmp)
    assert not left, f"leftover processes: {left}"
    step("PASS: no control-plane processes left")
    return 0


if __name__ == "__main__":
    sys.exit(main())
