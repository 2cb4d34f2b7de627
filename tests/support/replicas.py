"""Several `python -m conch_gateway` processes sharing one Redis and one configuration, as the
chart's replicas would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from support import REPO_ROOT, free_port
from support.k8s import wait_until


class GatewayProcesses:
    """n gateways; each is up once `ready_path` answers one of `ready_statuses`."""

    def __init__(self, n: int, env: dict[str, str], logs: Path, *, ready_path: str = "/health",
                 ready_statuses: tuple[int, ...] = (200, 503)):
        self.ports = [free_port() for _ in range(n)]
        self.processes = []
        for port in self.ports:
            log = open(logs / f"gateway-{port}.log", "ab")
            self.processes.append(subprocess.Popen([sys.executable, "-m", "conch_gateway"], cwd=REPO_ROOT,
                                                   env={**os.environ, **env, "PORT": str(port)},
                                                   stdout=log, stderr=subprocess.STDOUT))
        for port in self.ports:
            url = f"http://127.0.0.1:{port}{ready_path}"
            wait_until(lambda: _answers(url, ready_statuses), 60, message=f"gateway :{port}")

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(15)


def _answers(url: str, statuses: tuple[int, ...]) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code in statuses
    except httpx.HTTPError:
        return False
