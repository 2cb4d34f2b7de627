"""Helpers of the Kubernetes tiers: the operator as a real process, waiting for conditions."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import yaml

from . import REPO_ROOT, free_port


def wait_until(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1, message: str = "") -> Any:
    """Polls `check` until it returns something truthy; returns that value."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except AssertionError as exc:
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s: {message or check}" + (f" ({last_error})" if last_error else ""))


class Operator:
    """`python -m conch_operator` as a subprocess against a test cluster, watching one namespace."""

    def __init__(self, cluster, namespace: str, log_dir: Path, *, args: tuple[str, ...] = (), **settings: Any):
        self.cluster = cluster
        self.namespace = namespace
        self.args = args
        self.metrics_port = free_port()
        self.log_path = log_dir / f"operator-{namespace}-{int(time.time() * 1000)}.log"
        self.env = cluster.env()
        self.env.update({"CONCH_OPERATOR_METRICS_PORT": str(self.metrics_port),
                         "CONCH_OPERATOR_RESYNC_INTERVAL_S": "5", "CONCH_OPERATOR_EXTERNAL_PROBE_INTERVAL_S": "1",
                         **{f"CONCH_OPERATOR_{k.upper()}": str(v) for k, v in settings.items()}})
        self.process: subprocess.Popen | None = None

    def start(self) -> "Operator":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "conch_operator", "-n", self.namespace, *self.args],
                                        env=self.env,
                                        cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        # A standby has started once it says so; a leader once kopf runs.
        started = ("Initial authentication has finished", "standing by")
        wait_until(lambda: any(s in self.log() for s in started) or self._died(), 60, message="operator start")
        assert self.process.poll() is None, self.log()
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to finish what it was doing."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _died(self) -> bool:
        return self.process is not None and self.process.poll() is not None


class Kubectl:
    """kubectl against the test cluster, in one namespace, with JSON/YAML conveniences."""

    def __init__(self, cluster, namespace: str):
        self.cluster = cluster
        self.namespace = namespace

    def __call__(self, *args: str, input: str | None = None, check: bool = True):
        return self.cluster.kubectl("-n", self.namespace, *args, input=input, check=check)

    def apply(self, *manifests: dict, check: bool = True):
        return self("apply", "-f", "-", input=yaml.safe_dump_all(manifests), check=check)

    def get(self, kind: str, name: str | None = None, selector: str | None = None) -> Any:
        args = ["get", kind, *([name] if name else []), *(["-l", selector] if selector else []), "-o", "json"]
        result = self(*args, check=False)
        if result.returncode:
            if "NotFound" in result.stderr:
                return None
            raise AssertionError(result.stderr)
        data = json.loads(result.stdout)
        return data["items"] if "items" in data and name is None else data

    def model(self, name: str) -> dict | None:
        return self.get("model", name)


def model_manifest(name: str, **spec: Any) -> dict:
    spec.setdefault("runtime", "llama-cpp")
    if spec["runtime"] == "llama-cpp":
        spec.setdefault("source", {"file": {"path": "/models/smollm2.gguf"}})
    return {"apiVersion": "conch.dev/v1alpha1", "kind": "Model", "metadata": {"name": name}, "spec": spec}


def condition(model: dict, type_: str) -> dict | None:
    return next((c for c in (model or {}).get("status", {}).get("conditions", []) if c["type"] == type_), None)


class GatewayProcess:
    """`python -m conch_gateway` with the Kubernetes model source, as deployed."""

    def __init__(self, cluster, namespace: str | None, log_dir: Path):
        self.port = free_port()
        self.log_path = log_dir / f"gateway-{self.port}.log"
        self.env = cluster.env()
        self.env.update({"PORT": str(self.port), "CONCH_MODEL_SOURCE": "kubernetes"})
        if namespace:
            self.env["CONCH_WATCH_NAMESPACE"] = namespace
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "GatewayProcess":
        import httpx

        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "conch_gateway"], env=self.env, cwd=REPO_ROOT,
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def answering():
            assert self.process.poll() is None, self.log()
            try:
                return httpx.get(f"{self.url}/v1/models", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answering, 60, message="gateway start")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextmanager
def engine_cache_volume(cluster, namespace: str, claim: str = "conch-engine-cache") -> Iterator[None]:
    """A PersistentVolume bound in advance to a namespace's engine cache claim, as a storage admin
    would provide it (the control plane has no provisioner; the operator creates the claim)."""
    name = f"engines-{namespace}"
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
        "spec": {"capacity": {"storage": "500Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": "",
                 "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": f"/tmp/{name}"},
                 "claimRef": {"namespace": namespace, "name": claim}}}))
    try:
        yield
    finally:
        cluster.kubectl("delete", "pv", name, "--wait=false", check=False)
