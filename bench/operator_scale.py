"""Operator benchmarks on the local control plane (kwok nodes):

1. `kubectl apply` of one Model → its Deployment exists (p50/p90 over N single applies).
2. 500 Models applied at once → all Ready (total time), and the operator's peak RSS.
3. A Model's status change → the gateway's routing table updated (p50 over N flips; includes the
   `kubectl patch` process start, so it is an upper bound).

    .venv/bin/python bench/operator_scale.py [--models 500] [--singles 30] [--flips 20]

Results go to bench/results/operator_scale.json and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
import yaml

from conch_cluster import ControlPlane, NodeSpec

ROOT = Path(__file__).resolve().parents[1]
CRD = ROOT / "crds" / "conch.dev_models.yaml"


def model(name: str, **spec) -> dict:
    spec.setdefault("runtime", "llama-cpp")
    if spec["runtime"] == "llama-cpp":
        spec.setdefault("source", {"file": {"path": "/models/smollm2.gguf"}})
    return {"apiVersion": "conch.dev/v1alpha1", "kind": "Model", "metadata": {"name": name}, "spec": spec}


class PeakRSS(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.samples: list[tuple[float, int]] = []
        self.running = True

    def run(self) -> None:
        while self.running:
            try:
                rss = self.process.memory_info().rss
                self.peak = max(self.peak, rss)
                self.samples.append((time.monotonic(), rss))
            except psutil.Error:
                return
            time.sleep(0.05)


class ReadyWatch(threading.Thread):
    """`kubectl get models --watch`: the moment every Model reports phase Ready."""

    def __init__(self, cluster, namespace: str, count: int):
        super().__init__(daemon=True)
        self.count = count
        self.done = threading.Event()
        self.finished_at: float | None = None
        query = "jsonpath={.metadata.name} {.status.phase}{\"\\n\"}"
        self.process = subprocess.Popen([str(cluster.bin_dir / "kubectl"), f"--kubeconfig={cluster.kubeconfig}",
                                         "-n", namespace, "get", "models", "--watch", "-o", query],
                                        stdout=subprocess.PIPE, text=True)
        self.start()

    def run(self) -> None:
        ready: set[str] = set()
        for line in self.process.stdout:
            name, _, phase = line.strip().partition(" ")
            (ready.add if phase == "Ready" else ready.discard)(name)
            if len(ready) == self.count:
                self.finished_at = time.monotonic()
                self.done.set()
                return

    def wait(self, timeout: float) -> float:
        if not self.done.wait(timeout):
            raise TimeoutError("not every Model became Ready")
        self.process.kill()
        return self.finished_at


def wait(check, timeout: float, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(interval)
    raise TimeoutError(str(check))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument("--singles", type=int, default=30)
    parser.add_argument("--flips", type=int, default=20)
    args = parser.parse_args()
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from support.k8s import GatewayProcess, Kubectl, Operator

    results: dict = {}
    # Room for every replica: 110 pods per node is the kubelet default kwok keeps.
    nodes = [NodeSpec(f"cpu-{i}", cpu="256", memory="1Ti") for i in range(args.models // 100 + 1)]
    with tempfile.TemporaryDirectory() as tmp, ControlPlane(Path(tmp) / "cluster", nodes=nodes) as cluster:
        cluster.kubectl("apply", "-f", str(CRD))
        __import__("conch_cluster.stack", fromlist=["x"])._wait_established(cluster, "models.conch.dev")
        time.sleep(2)
        cluster.kubectl("create", "namespace", "bench")
        kubectl = Kubectl(cluster, "bench")
        # Production settings, not the short test intervals of the Operator helper.
        operator = Operator(cluster, "bench", Path(tmp), resync_interval_s=300, external_probe_interval_s=10).start()
        rss = PeakRSS(operator.process.pid)
        rss.start()
        try:
            # 1. apply → Deployment exists
            latencies = []
            for i in range(args.singles):
                started = time.monotonic()
                kubectl.apply(model(f"single-{i}"))
                applied = time.monotonic()
                done = wait(lambda: kubectl("get", "deployment", f"single-{i}-triton", check=False).returncode == 0, 30)
                latencies.append(done - applied)
                _ = started
            results["apply_to_deployment_p50_s"] = statistics.median(latencies)
            results["apply_to_deployment_p90_s"] = statistics.quantiles(latencies, n=10)[-1]
            kubectl("delete", "models", "--all", "--wait=true")

            # 2. many Models → all Ready
            manifests = [model(f"m{i}") for i in range(args.models)]
            started = time.monotonic()
            # Readiness is followed with one watch: polling 500 objects would steal the CPU measured.
            all_ready = ReadyWatch(cluster, "bench", args.models)
            # Server-side apply in parallel chunks: the harness should not be the bottleneck.
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(5) as pool:
                list(pool.map(lambda c: kubectl("apply", "--server-side", "-f", "-",
                                                input=yaml.safe_dump_all(manifests[c:c + 100])),
                              range(0, len(manifests), 100)))

            finished = all_ready.wait(600)
            results["models"] = args.models
            results["all_ready_s"] = finished - started
            results["operator_peak_rss_mb"] = rss.peak / 2**20
            results["operator_rss_mb_after"] = rss.samples[-1][1] / 2**20
            print("rss series (s, MB):", [(round(t - started), r // 2**20) for t, r in rss.samples[::40]], flush=True)
            kubectl("delete", "models", "--all", "--wait=false")

            # 3. status change → gateway routing (the operator is stopped so the status written here stays)
            operator.stop()
            gateway = GatewayProcess(cluster, "bench", Path(tmp)).start()
            try:
                kubectl.apply(model("flip", runtime="external",
                                    external={"url": "http://127.0.0.1:9", "tritonModel": "flip"}))

                def healthy() -> bool:
                    return httpx.get(f"{gateway.url}/health").json()["models"].get("flip") == "healthy"

                flips = []
                for i in range(args.flips):
                    up = i % 2 == 0
                    status = {"status": {"phase": "Ready" if up else "Degraded", "endpoint": "http://127.0.0.1:9",
                                         "tritonModel": "flip", "conditions": [
                                             {"type": "Ready", "status": "True" if up else "False", "reason": "Bench"}]}}
                    changed = time.monotonic()
                    kubectl("patch", "model", "flip", "--subresource=status", "--type=merge", "-p", json.dumps(status))
                    wait(lambda: healthy() == up, 30, interval=0.005)
                    flips.append(time.monotonic() - changed)
                results["status_to_routing_p50_s"] = statistics.median(flips)
                results["status_to_routing_max_s"] = max(flips)
            finally:
                gateway.stop()
        finally:
            rss.running = False
            operator.stop()

    out = ROOT / "bench" / "results" / "operator_scale.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print("| measure | result | target |\n|---|---|---|")
    print(f"| `kubectl apply` → Deployment exists, p50 (p90) | {results['apply_to_deployment_p50_s']*1000:.0f} ms "
          f"({results['apply_to_deployment_p90_s']*1000:.0f} ms) | ≤ 500 ms |")
    print(f"| {results['models']} Models → all Ready | {results['all_ready_s']:.1f} s | ≤ 60 s |")
    print(f"| operator peak RSS during that | {results['operator_peak_rss_mb']:.0f} MB | ≤ 150 MB |")
    print(f"| status written → gateway routing updated, p50 (max) | {results['status_to_routing_p50_s']*1000:.0f} ms "
          f"({results['status_to_routing_max_s']*1000:.0f} ms) | ≤ 1 s |")


if __name__ == "__main__":
    main()
