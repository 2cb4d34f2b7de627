"""Conch on the local cluster, as a user installs it (what `make cluster` runs): the chart installed
with `helm install` — operator and gateway as pods on the real node, images built here, the
gateway's Ingress served by Traefik — and a relay from 127.0.0.1:<port> to that ingress, so the
gateway answers at http://127.0.0.1:8080 as before.

The relay carries the plane's owner tag, so `down` — even after a crash that lost the state file —
stops it along with the plane.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .controlplane import ControlPlane
from .diagnostics import host_report, pod_report
from .errors import ClusterError
from .processes import OWNER_ENV, proc_start_time, tail

STACK_FILE = "stack.json"
RELEASE = "conch"
NAMESPACE = "conch"
CHART = Path(__file__).resolve().parents[2] / "charts" / "conch"


def chart_values(manifest: dict) -> dict:
    """The chart's values for this machine: the images built here, the Ingress through Traefik."""
    return {"image": {"tag": manifest["tag"]},
            "gateway": {"ingress": {"enabled": True, "className": "traefik"}}}


HELM_WAIT_S = 420  # a 2-core node starting five Python pods while the test suite runs beside it


def helm(plane: ControlPlane, state_dir: Path, *args: str, timeout: float = HELM_WAIT_S + 60) -> subprocess.CompletedProcess:
    """Runs helm; when it fails (a `--wait` that timed out, above all) the error carries the pods,
    their events and the logs of those not ready (diagnostics.pod_report)."""
    env = plane.env()
    env.update({f"HELM_{k}_HOME": str(state_dir / "helm" / k.lower()) for k in ("CACHE", "CONFIG", "DATA")})
    try:
        proc = subprocess.run([str(plane.bin_dir / "helm"), *args], env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"helm {' '.join(args[:2])} did not finish in {timeout:.0f} s\n"
                           + pod_report(plane.kubectl, NAMESPACE) + "\n\n" + host_report()) from None
    if proc.returncode:
        raise ClusterError(f"helm {' '.join(args[:2])} failed: {proc.stderr.strip()}\n"
                           + pod_report(plane.kubectl, NAMESPACE) + "\n\n" + host_report())
    return proc


def up(state_dir: Path, plane: ControlPlane, manifest: dict, gateway_port: int) -> str:
    """Installs the chart and starts the relay; returns the gateway's URL once it answers there."""
    values = state_dir / "values.yaml"
    values.write_text(json.dumps(chart_values(manifest), indent=2))  # JSON is YAML
    helm(plane, state_dir, "upgrade", "--install", RELEASE, str(CHART), "-n", NAMESPACE, "--create-namespace",
         "-f", str(values), "--wait", f"--timeout={HELM_WAIT_S}s")
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    target = plane.ingress_url.removeprefix("http://")
    with open(logs / "relay.log", "ab") as log:
        relay = subprocess.Popen([sys.executable, "-m", "conch_cluster.relay", f"127.0.0.1:{gateway_port}", target],
                                 env={**os.environ, OWNER_ENV: str(state_dir.resolve())}, stdout=log,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    (state_dir / STACK_FILE).write_text(json.dumps({"relay": relay.pid, "start_time": proc_start_time(relay.pid)}))
    url = f"http://127.0.0.1:{gateway_port}"
    _wait_for_gateway(relay, url, logs / "relay.log", admin_key(plane))
    return url


def admin_key(plane: ControlPlane) -> str | None:
    """The admin API key the chart generated, when the gateway requires keys (docs/auth.md)."""
    import base64

    found = plane.kubectl("-n", NAMESPACE, "get", "secret", f"{RELEASE}-admin-key", "-o", "jsonpath={.data.key}",
                          check=False)
    return base64.b64decode(found.stdout).decode() if found.returncode == 0 and found.stdout else None


def down(state_dir: Path) -> None:
    """Stops the relay (the chart's pods go with the node)."""
    try:
        stack = json.loads((state_dir / STACK_FILE).read_text())
    except (OSError, ValueError):
        return
    pid = stack.get("relay")
    if pid and proc_start_time(pid) == stack.get("start_time"):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while proc_start_time(pid) == stack.get("start_time") and time.monotonic() < deadline:
            time.sleep(0.1)
        if proc_start_time(pid) == stack.get("start_time"):
            os.kill(pid, signal.SIGKILL)
    (state_dir / STACK_FILE).unlink(missing_ok=True)


def export_line(plane: ControlPlane) -> str:
    return f"export KUBECONFIG={shlex.quote(str(plane.kubeconfig))}"


def _wait_for_gateway(relay: subprocess.Popen, url: str, log: Path, key: str | None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    while time.monotonic() < deadline:
        if relay.poll() is not None:
            raise ClusterError(f"the relay to the ingress exited:\n{tail(log)}")
        try:
            request = urllib.request.Request(f"{url}/v1/models", headers=headers)
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError as e:
            last = e
        time.sleep(0.3)
    raise ClusterError(f"the gateway did not answer at {url} through the ingress ({last})")
