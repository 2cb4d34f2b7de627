"""Conch on the local cluster's real node (kubelet + containerd + runc), images built here:

1. `helm install` → first token: from the start of `helm install` (images already on the node)
   through `kubectl apply -f examples/smollm2-cpu.yaml` to the first streamed token of an
   `openai` SDK request through the ingress (Traefik). Target ≤ 60 s.
2. `kubectl apply` of the smollm2 Model → `status.phase` Ready (its Triton pod Ready on the real
   node), over several delete/apply cycles. Target ≤ 20 s.
3. Gateway overhead in the cluster: a client pod on the node sends the same completion, one at a
   time, alternately (a) to the gateway's Service (pod → Service → gateway pod → the Model's Service
   → Triton pod) and (b) to the Model's Service directly (pod → Service → Triton pod, Triton's own
   `generate`); the ratio of the medians, and the added milliseconds.

    .venv/bin/python bench/kubernetes.py [--applies 5] [--requests 60] [--images images.json]

Needs root (the real node) and `make tools images`. Results: bench/results/kubernetes-*.json and a
markdown table on stdout.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai
import yaml

from common import REPO_ROOT, code_version, machine, markdown_table, say, stop_on_signals, write_results
from conch_cluster import GPU_NODES, ControlPlane, images

CHART = REPO_ROOT / "charts" / "conch"
EXAMPLE = REPO_ROOT / "examples" / "smollm2-cpu.yaml"
MODEL = yaml.safe_load(EXAMPLE.read_text())["metadata"]["name"]
NAMESPACE, MODELS = "conch", "default"
CHAT = [{"role": "user", "content": "What is the capital of France?"}]
# The prompt both targets of the overhead measurement get: what the gateway sends Triton for the
# chat above (chatml), as a plain completion so that neither side renders a template.
PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"

# Runs in the client pod (the gateway image: Python, stdlib only). Alternates the two targets over
# kept-alive connections, one request at a time; prints one JSON line.
CLIENT = r"""
import http.client, json, os, time
def target(url, path, body, headers):
    host, port = url.split("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    payload = json.dumps(body).encode()
    def call():
        t = time.perf_counter()
        conn.request("POST", path, payload, {"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        data = response.read()
        assert response.status == 200, (response.status, data[:300])
        return (time.perf_counter() - t) * 1000, json.loads(data)
    return call
prompt, n = os.environ["PROMPT"], int(os.environ["REQUESTS"])
direct = target(os.environ["TRITON_URL"], f"/v2/models/{os.environ['MODEL']}/generate",
                {"text_input": prompt, "max_tokens": 1, "temperature": 0.0}, {})
gateway = target(os.environ["GATEWAY_URL"], "/v1/completions",
                 {"model": os.environ["MODEL"], "prompt": prompt, "max_tokens": 1, "temperature": 0},
                 {"Authorization": "Bearer " + os.environ["API_KEY"]})
for _ in range(5):
    direct(); gateway()
times = {"direct": [], "gateway": []}
texts = set()
for i in range(n):
    for name, call in ((("direct", direct), ("gateway", gateway)) if i % 2 == 0 else (("gateway", gateway), ("direct", direct))):
        ms, body = call()
        times[name].append(ms)
        texts.add(body.get("text_output") or body["choices"][0]["text"])
print(json.dumps({"times": times, "texts": sorted(texts)}))
"""


class Bench:
    def __init__(self, plane: ControlPlane, manifest: dict, workdir: Path):
        self.plane, self.manifest, self.workdir = plane, manifest, workdir
        self.env = plane.env()
        self.env.update({f"HELM_{k}_HOME": str(workdir / "helm" / k.lower()) for k in ("CACHE", "CONFIG", "DATA")})

    def helm(self, *args: str) -> None:
        subprocess.run([str(self.plane.bin_dir / "helm"), *args], env=self.env, check=True, capture_output=True,
                       text=True, timeout=600)

    def phase(self) -> str | None:
        status, body = self.plane.api("GET", f"/apis/conch.dev/v1alpha1/namespaces/{MODELS}/models/{MODEL}")
        return body.get("status", {}).get("phase") if status == 200 else None

    def api_key(self) -> str:
        out = self.plane.kubectl("-n", NAMESPACE, "get", "secret", "conch-admin-key", "-o", "jsonpath={.data.key}")
        return base64.b64decode(out.stdout).decode()

    def sdk(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.plane.ingress_url}/v1", api_key=key, max_retries=0, timeout=60)

    # ------------------------------------------------------------------ 1. helm install → first token

    def install_to_first_token(self) -> dict:
        values = self.workdir / "values.yaml"
        values.write_text(json.dumps({"image": {"tag": self.manifest["tag"]},
                                      "gateway": {"ingress": {"enabled": True, "className": "traefik"}}}))
        marks: dict[str, float] = {}
        t0 = time.monotonic()
        self.helm("install", "conch", str(CHART), "-n", NAMESPACE, "--create-namespace", "-f", str(values))
        marks["helm install returned"] = time.monotonic() - t0
        self.plane.kubectl("-n", MODELS, "apply", "-f", str(EXAMPLE))
        marks["Model applied"] = time.monotonic() - t0
        sdk = self.sdk(self.api_key())
        while True:
            if "Model Ready" not in marks and self.phase() == "Ready":
                marks["Model Ready"] = time.monotonic() - t0
            try:
                for chunk in sdk.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=16, temperature=0,
                                                         stream=True):
                    if chunk.choices and chunk.choices[0].delta.content:
                        marks["first token"] = time.monotonic() - t0
                        break
            except openai.OpenAIError:
                pass  # the ingress route, the gateway or the Model not there yet
            if "first token" in marks:
                break
            if time.monotonic() - t0 > 600:
                raise SystemExit(f"no token within 600 s: {marks}")
            time.sleep(0.2)
        marks.setdefault("Model Ready", time.monotonic() - t0)
        return {k: round(v, 2) for k, v in marks.items()}

    # ------------------------------------------------------------------ 2. kubectl apply → Ready

    def apply_to_ready(self, cycles: int) -> list[float]:
        seconds = []
        for _ in range(cycles):
            self.plane.kubectl("-n", MODELS, "delete", "model", MODEL, "--ignore-not-found", "--wait=true")
            self._wait(lambda: not self._triton_pods(), 120, "Triton pods gone")
            t0 = time.monotonic()
            self.plane.kubectl("-n", MODELS, "apply", "-f", str(EXAMPLE))
            self._wait(lambda: self.phase() == "Ready", 300, "Model Ready", interval=0.1)
            seconds.append(round(time.monotonic() - t0, 2))
            say(f"kubectl apply → Ready: {seconds[-1]} s")
        return seconds

    def _triton_pods(self) -> list:
        status, body = self.plane.api("GET", f"/api/v1/namespaces/{MODELS}/pods?labelSelector=conch.dev/model={MODEL}")
        return body["items"] if status == 200 else []

    @staticmethod
    def _wait(check, timeout: float, what: str, interval: float = 0.5) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise SystemExit(f"{what}: not within {timeout:.0f} s")
            time.sleep(interval)

    # ------------------------------------------------------------------ 3. in-cluster overhead

    def overhead(self, requests: int) -> dict:
        status, model = self.plane.api("GET", f"/apis/conch.dev/v1alpha1/namespaces/{MODELS}/models/{MODEL}")
        triton_url = model["status"]["endpoint"]
        gateway_url = f"http://conch-gateway.{NAMESPACE}.svc.cluster.local:8000"
        restricted = {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                      "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
        env = {"PROMPT": PROMPT, "REQUESTS": str(requests), "MODEL": MODEL, "TRITON_URL": triton_url,
               "GATEWAY_URL": gateway_url}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bench-client", "namespace": NAMESPACE},
               "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False, "containers": [{
                   "name": "client", "image": self.manifest["images"]["conch-gateway"]["ref"],
                   "imagePullPolicy": "Never", "command": ["python", "-c", CLIENT], "securityContext": restricted,
                   "env": [*({"name": k, "value": v} for k, v in env.items()),
                           {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "conch-admin-key", "key": "key"}}}],
                   "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}}]}}
        self.plane.kubectl("apply", "-f", "-", input=json.dumps(pod))
        self._wait(lambda: self._pod_phase("bench-client") in ("Succeeded", "Failed"), 600, "the client pod")
        log = self.plane.kubectl("-n", NAMESPACE, "logs", "bench-client").stdout
        if self._pod_phase("bench-client") != "Succeeded":
            raise SystemExit(f"the client pod failed:\n{log}")
        self.plane.kubectl("-n", NAMESPACE, "delete", "pod", "bench-client", "--wait=false")
        result = json.loads(log.strip().splitlines()[-1])
        times = result["times"]
        p50 = {k: statistics.median(v) for k, v in times.items()}
        p90 = {k: statistics.quantiles(v, n=10)[-1] for k, v in times.items()}
        return {"requests_each": requests, "triton_url": triton_url, "gateway_url": gateway_url,
                "texts": result["texts"], "p50_ms": p50, "p90_ms": p90,
                "ratio_p50": p50["gateway"] / p50["direct"], "added_p50_ms": p50["gateway"] - p50["direct"],
                "raw_ms": times}

    def _pod_phase(self, name: str) -> str | None:
        status, body = self.plane.api("GET", f"/api/v1/namespaces/{NAMESPACE}/pods/{name}")
        return body.get("status", {}).get("phase") if status == 200 else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--applies", type=int, default=5, help="kubectl apply → Ready cycles")
    parser.add_argument("--requests", type=int, default=60, help="requests per target for the overhead")
    parser.add_argument("--images", help="images.json of `make images` (default: build/refresh the working tree's)")
    args = parser.parse_args()
    stop_on_signals()
    manifest = json.loads(Path(args.images).read_text()) if args.images else images.ensure()
    with tempfile.TemporaryDirectory(prefix="conch-bench-k8s-") as tmp:
        plane = ControlPlane(Path(tmp) / "cluster", nodes=GPU_NODES, real_node=True, images=manifest,
                             start_timeout=240)
        say("starting the local cluster with a real node…")
        plane.start()
        try:
            say(f"cluster ready in {plane.startup_seconds:.1f} s")
            bench = Bench(plane, manifest, Path(tmp))
            first = bench.install_to_first_token()
            say(f"helm install → first token: {first}")
            applies = bench.apply_to_ready(args.applies)
            over = bench.overhead(args.requests)
            say(f"overhead: {over['p50_ms']} ratio {over['ratio_p50']:.3f}")
        finally:
            plane.stop()
    results = {"machine": machine(), "code": code_version(), "images": manifest["tag"],
               "cluster_start_s": round(plane.startup_seconds or 0, 1), "install_to_first_token": first,
               "apply_to_ready_s": applies, "overhead": over}
    path = write_results("kubernetes", results)
    rows = [
        ["`helm install` → first token (images on the node)", f"{first['first token']:.1f} s "
         f"(helm {first['helm install returned']:.1f} s, Model Ready {first['Model Ready']:.1f} s)", "≤ 60 s"],
        ["`kubectl apply` smollm2 → Ready, median (min–max)",
         f"{statistics.median(applies):.1f} s ({min(applies):.1f}–{max(applies):.1f}), n={len(applies)}", "≤ 20 s"],
        ["in-cluster: pod → gateway Service → Triton pod vs pod → Triton Service, p50 (1 token)",
         f"{over['p50_ms']['gateway']:.1f} ms vs {over['p50_ms']['direct']:.1f} ms: ×{over['ratio_p50']:.3f}, "
         f"+{over['added_p50_ms']:.1f} ms", "—"],
    ]
    print(markdown_table(["measure", "result", "target"], rows))
    say(f"results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
