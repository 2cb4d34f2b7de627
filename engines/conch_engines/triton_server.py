"""Starting the `tritonserver` binary shipped in the `nvidia-pytriton` wheel — the one place
that knows how.

Three things make the wheel's binary work outside PyTriton:
- its shared libraries live in the wheel's `nvidia_pytriton.libs/` (LD_LIBRARY_PATH);
- the Python backend needs a `triton_python_backend_stub` built for *this* Python version next
  to `libtriton_python.so`, so a backend directory is assembled from the wheel's per-version stubs;
- the stub embeds libpython and finds the virtualenv through PATH (its program name is
  `python3`), so the venv's `bin/` goes first on PATH and this interpreter's libpython first on
  LD_LIBRARY_PATH — otherwise models fail to import their packages (ModuleNotFoundError).

And one thing makes numpy models (the sentence-embedding runtime) fast: the OpenBLAS inside
numpy<2's wheel (0.3.23) takes CPU models it does not know, such as Emerald Rapids Xeons, for a
Prescott and runs matrix products ~5x slower (OpenMathLib/OpenBLAS#4267, fixed after 0.3.24), so
Triton gets OPENBLAS_CORETYPE chosen from the CPU's features unless it is already set.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

_PR_SET_PDEATHSIG = 1


class TritonStartError(RuntimeError):
    """Triton did not come up; the message carries Triton's own last log lines."""


@dataclass(frozen=True)
class TritonPorts:
    http: int = 8100
    grpc: int = 8101
    metrics: int = 8102

    @classmethod
    def from_http(cls, http: int) -> "TritonPorts":
        return cls(http=http, grpc=http + 1, metrics=http + 2)


@dataclass(frozen=True)
class TritonDistribution:
    """Where the wheel put the binary, its libraries and the Python backend."""

    root: Path  # .../site-packages/pytriton/tritonserver
    libs: Path  # .../site-packages/nvidia_pytriton.libs

    @classmethod
    def find(cls) -> "TritonDistribution":
        spec = find_spec("pytriton")
        if spec is None or spec.origin is None:
            raise TritonStartError("the nvidia-pytriton package is not installed (run `make up` to install it)")
        package = Path(spec.origin).parent
        return cls(root=package / "tritonserver", libs=package.parent / "nvidia_pytriton.libs")

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    def stub(self, python_version: str) -> Path:
        return self.root / "python_backend_stubs" / python_version / "triton_python_backend_stub"

    def assemble_backends(self, target: Path) -> Path:
        """A backend directory whose Python backend has the stub for the running interpreter."""
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = self.stub(version)
        if not stub.exists():
            raise TritonStartError(f"nvidia-pytriton ships no Python backend stub for Python {version}")
        python_backend = target / "python"
        python_backend.mkdir(parents=True, exist_ok=True)
        for source in (self.root / "backends" / "python").iterdir():
            if source.is_file():
                _copy_if_changed(source, python_backend / source.name)
        _copy_if_changed(stub, python_backend / "triton_python_backend_stub")
        return target


@dataclass
class TritonServer:
    """A local Triton process serving one model repository on 127.0.0.1."""

    model_repository: Path
    workdir: Path
    ports: TritonPorts = field(default_factory=TritonPorts)
    log_verbose: int = 0
    extra_args: tuple[str, ...] = ()
    address: str = "127.0.0.1"
    _process: subprocess.Popen | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "tritonserver.log"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def command(self, dist: TritonDistribution) -> list[str]:
        backends = dist.assemble_backends(self.workdir / "backends")
        return [
            str(dist.binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backends}",
            f"--http-address={self.address}",
            f"--http-port={self.ports.http}",
            f"--grpc-address={self.address}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-address={self.address}",
            f"--metrics-port={self.ports.metrics}",
            "--allow-gpu-metrics=false",
            "--exit-timeout-secs=5",
            f"--log-verbose={self.log_verbose}",
            *self.extra_args,
        ]

    def environment(self, dist: TritonDistribution) -> dict[str, str]:
        env = dict(os.environ)
        libdirs = [sysconfig.get_config_var("LIBDIR") or "", str(dist.libs), env.get("LD_LIBRARY_PATH", "")]
        env["LD_LIBRARY_PATH"] = ":".join(p for p in libdirs if p)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        env.pop("PYTHONHOME", None)
        if "OPENBLAS_CORETYPE" not in env and (core := openblas_coretype(cpu_flags())):
            env["OPENBLAS_CORETYPE"] = core
        return env

    def start(self, timeout: float = 180.0) -> "TritonServer":
        for port in (self.ports.http, self.ports.grpc, self.ports.metrics):
            if not port_is_free(port):
                raise TritonStartError(f"port {port} on 127.0.0.1 is already in use (set TRITON_HTTP_PORT to move Triton)")
        dist = TritonDistribution.find()
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        self._process = subprocess.Popen(
            self.command(dist),
            env=self.environment(dist),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so stop() reaches the Python stubs too
            preexec_fn=die_with_parent,
        )
        log.close()
        self._wait_ready(timeout)
        return self

    def exec(self) -> None:
        """Replaces this process with tritonserver (a container's PID 1 then gets signals directly)."""
        dist = TritonDistribution.find()
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = self.command(dist)
        os.execve(command[0], command, self.environment(dist))

    def stop(self, timeout: float = 15.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(5)
        _signal_group(process.pid, signal.SIGKILL)  # stragglers: Python stubs of unloaded models

    def kill(self) -> None:
        """Abrupt death, as in a crash (used by tests of the gateway's 503 path)."""
        if self._process is not None:
            _signal_group(self._process.pid, signal.SIGKILL)
            self._process.wait(10)
            self._process = None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, "rb") as f:
                tail = deque(f, maxlen=lines)
        except FileNotFoundError:
            return "(no log)"
        return b"".join(tail).decode("utf-8", errors="replace")

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise TritonStartError(f"tritonserver exited with code {code}. Its log ends with:\n{self.log_tail()}")
            if _http_ok(f"{self.url}/v2/health/ready"):
                return
            time.sleep(0.2)
        self.stop()
        raise TritonStartError(f"tritonserver was not ready after {timeout:.0f}s. Its log ends with:\n{self.log_tail()}")


def port_is_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return set()


def openblas_coretype(flags: set[str]) -> str | None:
    """The OpenBLAS kernel set these x86 CPU features run (SkylakeX needs AVX-512 F/CD/BW/DQ/VL,
    Haswell AVX2 and FMA), or None to leave OpenBLAS's own detection alone."""
    if {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        return "SKYLAKEX"
    if {"avx2", "fma"} <= flags:
        return "HASWELL"
    return None


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _copy_if_changed(source: Path, target: Path) -> None:
    if target.exists() and target.stat().st_size == source.stat().st_size and target.stat().st_mtime >= source.stat().st_mtime:
        return
    shutil.copy2(source, target)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def die_with_parent() -> None:
    """Runs in the child: Triton gets SIGTERM if the process that started it dies, so a killed
    launcher never leaves an orphan Triton behind."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
