"""`make cluster` / `make cluster-down`: the developer stack starts in the background, prints the
KUBECONFIG export last, serves the gateway, and stops without leaving a process behind."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from conch_cluster import ControlPlane
from conch_cluster.processes import find_owned
from support import REPO_ROOT, free_port

pytestmark = pytest.mark.k8s


def test_cluster_up_and_down(tmp_path):
    state = tmp_path / "stack"
    port = free_port()
    up = subprocess.run([sys.executable, "-m", "conch_cluster", "up", "--with-conch", "--state-dir", str(state),
                         "--gateway-port", str(port)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                        env={**os.environ, "CONCH_OPERATOR_METRICS_PORT": str(free_port())})
    try:
        assert up.returncode == 0, up.stderr
        last = up.stdout.strip().splitlines()[-1]
        assert last.startswith("export KUBECONFIG=")
        kubeconfig = last.split("=", 1)[1].strip("'")
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").json() == {"object": "list", "data": [], "models": []}
        owned = find_owned(str(state.resolve()))
        commands = [open(f"/proc/{pid}/cmdline", "rb").read() for pid in owned]
        assert any(b"conch_operator" in c for c in commands) and any(b"conch_gateway" in c for c in commands)
        assert any(b"kube-apiserver" in c for c in commands) and any(b"kwok" in c for c in commands)
        plane = ControlPlane.attach(state)
        assert str(plane.kubeconfig) == kubeconfig
        assert plane.kubectl("get", "crd", "models.conch.dev").returncode == 0
    finally:
        down = subprocess.run([sys.executable, "-m", "conch_cluster", "down", "--state-dir", str(state)],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert find_owned(str(state.resolve())) == []
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
