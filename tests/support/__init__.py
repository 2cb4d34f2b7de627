"""Helpers shared by the test tiers (importable as `support`)."""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

REPO_ROOT = Path(__file__).resolve().parents[2]


def default_interrupt() -> None:
    """preexec_fn for a program a test interrupts as Ctrl-C at a terminal would: SIGINT at its default
    there, while a test run started in the background (`make test &`, nohup) ignores it, and a
    Python program started with SIGINT ignored never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_block(size: int = 3) -> int:
    """The first of `size` consecutive free ports (Triton takes http, grpc, metrics in a row)."""
    for _ in range(200):
        base = free_port()
        if base + size < 65535 and all(_is_free(base + i) for i in range(size)):
            return base
    raise RuntimeError("no block of free ports")


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class GatewayServer:
    """A gateway app served by a real uvicorn on 127.0.0.1, in a background thread."""

    def __init__(self, app: Any):
        self.app = app
        self.port = free_port()
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                     lifespan="on", timeout_graceful_shutdown=2))
        self._thread = threading.Thread(target=self._server.run, name="gateway", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "GatewayServer":
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(15)

    def __enter__(self) -> "GatewayServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def model_resource(name: str, endpoint: str, triton_model: str, *, display_name: str | None = None,
                   interface: str = "ensemble", grpc_address: str | None = None, **spec: Any) -> dict[str, Any]:
    """A `Model` resource as the operator publishes it once Ready."""
    return {
        "apiVersion": "conch.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name},
        "spec": {"runtime": "llama-cpp", "displayName": display_name or name, "promptFamily": "chatml", **spec},
        "status": {
            "phase": "Ready",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Test"}],
            "endpoint": endpoint,
            **({"grpcAddress": grpc_address} if grpc_address else {}),
            "tritonModel": triton_model,
            "interface": interface,
        },
    }
