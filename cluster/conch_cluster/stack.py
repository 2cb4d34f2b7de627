"""The developer stack on top of the local control plane: the Model CRD, the Conch operator and a
gateway using the Kubernetes model source, all in the background (what `make cluster` runs).

The operator and gateway carry the plane's owner tag in their environment, so `down` — even after
a crash that lost the state file — stops them along with the plane.
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
from .errors import ClusterError
from .processes import OWNER_ENV, tail

STACK_FILE = "stack.json"


def up(state_dir: Path, crd: Path, gateway_port: int, plane: ControlPlane) -> None:
    plane.kubectl("apply", "-f", str(crd))
    _wait_established(plane, _crd_name(crd))
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = plane.env()
    env[OWNER_ENV] = str(state_dir.resolve())
    operator = _spawn([sys.executable, "-m", "conch_operator", "--all-namespaces"],
                      {**env, "CONCH_OPERATOR_METRICS_PORT": env.get("CONCH_OPERATOR_METRICS_PORT", "8090")},
                      logs / "operator.log")
    gateway = _spawn([sys.executable, "-m", "conch_gateway"],
                     {**env, "CONCH_MODEL_SOURCE": "kubernetes", "PORT": str(gateway_port)}, logs / "gateway.log")
    (state_dir / STACK_FILE).write_text(json.dumps({"operator": operator.pid, "gateway": gateway.pid}))
    _wait_for_gateway(gateway, gateway_port, logs / "gateway.log")
    if operator.poll() is not None:
        raise ClusterError(f"the operator exited:\n{tail(logs / 'operator.log')}")


def down(state_dir: Path) -> None:
    """Stops the operator and the gateway before the plane, so they do not spin on a dead API."""
    try:
        pids = json.loads((state_dir / STACK_FILE).read_text())
    except (OSError, ValueError):
        return
    for pid in pids.values():
        _terminate(pid)
    (state_dir / STACK_FILE).unlink(missing_ok=True)


def export_line(plane: ControlPlane) -> str:
    return f"export KUBECONFIG={shlex.quote(str(plane.kubeconfig))}"


def _spawn(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # outlives `make cluster`


def _wait_for_gateway(process: subprocess.Popen, port: int, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ClusterError(f"the gateway exited:\n{tail(log)}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    raise ClusterError(f"the gateway did not answer on port {port}:\n{tail(log)}")


def _terminate(pid: int, timeout: float = 15) -> None:
    if not _is_ours(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _is_ours(pid):
        time.sleep(0.1)
    if _is_ours(pid):
        os.kill(pid, signal.SIGKILL)


def _is_ours(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and (b"conch_operator" in cmdline or b"conch_gateway" in cmdline)


def _wait_established(plane: ControlPlane, name: str, timeout: float = 60) -> None:
    # `kubectl wait` fails outright when it looks before the CRD has any status: poll instead.
    query = "jsonpath={.status.conditions[?(@.type=='Established')].status}"
    deadline = time.monotonic() + timeout
    while plane.kubectl("get", "crd", name, "-o", query, check=False).stdout.strip() != "True":
        if time.monotonic() > deadline:
            raise ClusterError(f"CRD {name} was not established within {timeout:.0f}s")
        time.sleep(0.1)


def _crd_name(crd: Path) -> str:
    import yaml

    return yaml.safe_load(crd.read_text())["metadata"]["name"]
