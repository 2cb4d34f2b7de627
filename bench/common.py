"""Shared plumbing of the Conch benchmarks: child processes, ports, wrk, results.

Everything here runs under the project venv (`.venv/bin/python`). Peers (LiteLLM,
llama-cpp-python's server) run from their own venv, `bench/.venv-peers`, which `bench/setup.sh`
creates; they are only ever started as child processes.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from conch_engines.triton_server import die_with_parent, port_is_free

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
PEERS_VENV = Path(os.environ.get("CONCH_BENCH_PEERS_VENV", BENCH_DIR / ".venv-peers"))
PEERS_BIN = PEERS_VENV / "bin"

# Everything a child needs to stay off the network (LiteLLM would otherwise fetch its model cost
# map from GitHub at import, and llama.cpp / HF libraries may look for a hub).
OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY": "False",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}


def stop_on_signals() -> None:
    """SIGTERM and SIGINT (even when inherited as ignored, as in a background job) raise
    KeyboardInterrupt, so the scripts' `finally` blocks stop every server they started."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# ports and processes


def free_port_block(size: int = 1) -> int:
    """The first of `size` consecutive free ports on 127.0.0.1."""
    for _ in range(500):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + size < 65000 and all(port_is_free(base + i) for i in range(size)):
            return base
    raise RuntimeError("no block of free ports")


@dataclass
class Child:
    """A server started by the benchmark, in its own process group, logging to a file."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    process: subprocess.Popen | None = None

    def start(self) -> "Child":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        env = {**os.environ, **OFFLINE_ENV, **self.env}
        self.process = subprocess.Popen(
            list(self.argv), env=env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_http(self, url: str, timeout: float = 120.0, accept=(200,)) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited early (code {self.process.returncode}); log:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status in accept:
                        return
            except urllib.error.HTTPError as e:
                if e.code in accept:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} did not answer {url} within {timeout:.0f}s; log:\n{self.log_tail()}")

    def pause(self) -> None:
        """Freezes the whole process group (SIGSTOP), so an idle server takes no CPU at all
        while another one is measured."""
        if self.alive():
            _killpg(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.alive():
            _killpg(self.pid, signal.SIGCONT)

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.poll() is None:
            _killpg(process.pid, signal.SIGCONT)
            _killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                _killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        _killpg(process.pid, signal.SIGKILL)  # workers left in the group

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def __enter__(self) -> "Child":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def post_json(url: str, body: dict, timeout: float = 120.0) -> tuple[int, dict]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        payload = e.read()
        try:
            return e.code, json.loads(payload)
        except ValueError:
            return e.code, {"raw": payload.decode(errors="replace")}


# --------------------------------------------------------------------------------------------
# the gateway in front of a benchmark's Triton


def routed(resource: dict, triton) -> dict:
    """A copy of a `Model` resource routed to `triton` (a running TritonServer) as the operator
    publishes it: `endpoint` is Triton's HTTP URL, `grpcAddress` its gRPC port (HTTP + 1), which
    the gateway streams over when CONCH_STREAM_TRANSPORT=grpc."""
    out = json.loads(json.dumps(resource))
    out["status"]["endpoint"] = triton.url
    out["status"]["grpcAddress"] = f"127.0.0.1:{triton.ports.grpc}"
    return out


def start_gateway(resources: Sequence[dict], workdir: Path, name: str = "conch",
                  env: dict[str, str] | None = None) -> tuple[Child, str]:
    """`python -m conch_gateway` (what `make up` runs) serving `resources` from a local models
    file, with extra `env` settings; returns the child and its base URL once /health answers."""
    import yaml

    models_file = workdir / f"{name}-models.yaml"
    models_file.write_text(yaml.safe_dump_all(list(resources), sort_keys=False))
    port = free_port_block(1)
    child = Child(name, [sys.executable, "-m", "conch_gateway"], workdir / "logs" / f"{name}.log",
                  env={"PORT": str(port), "CONCH_HOST": "127.0.0.1", "CONCH_MODEL_SOURCE": "local",
                       "CONCH_LOCAL_MODELS_FILE": str(models_file), "CONCH_LOG_LEVEL": "warning", **(env or {})}).start()
    child.wait_http(f"http://127.0.0.1:{port}/health", timeout=60)
    return child, f"http://127.0.0.1:{port}"


# --------------------------------------------------------------------------------------------
# wrk

_WRK_LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%(body)s]==]

local bad = 0
function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end

done = function(summary, latency, requests)
  local p = {}
  for _, q in ipairs({50, 90, 99, 99.9}) do
    p[#p + 1] = string.format('"%%s": %%d', tostring(q), latency:percentile(q))
  end
  io.write(string.format(
    'WRK_JSON {"requests": %%d, "duration_us": %%d, "bytes": %%d, "connect_errors": %%d, ' ..
    '"read_errors": %%d, "write_errors": %%d, "status_errors": %%d, "timeouts": %%d, ' ..
    '"latency_us": {"min": %%d, "max": %%d, "mean": %%f, "stdev": %%f, %%s}}\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency.min, latency.max, latency.mean, latency.stdev, table.concat(p, ", ")))
end
"""


def wrk_available() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not installed: run `bash bench/setup.sh` (apt-get install -y wrk)")
    return path


def run_wrk(url: str, body: dict, *, connections: int, seconds: float, workdir: Path, threads: int = 1,
            timeout_s: int = 10) -> dict[str, Any]:
    """Runs wrk against `url` POSTing `body`; returns its summary (latencies in microseconds).

    Note: wrk only records latency from its own HdrHistogram, whose percentiles are exact to
    the microsecond at these magnitudes."""
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "post.lua"
    body_text = json.dumps(body, separators=(",", ":"))
    if "]==]" in body_text:
        raise ValueError("body cannot be embedded in the Lua long string")
    script.write_text(_WRK_LUA % {"body": body_text})
    argv = [wrk_available(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout_s}s",
            "-s", str(script), url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr}\n{out.stdout}")
    line = next((l for l in out.stdout.splitlines() if l.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")
    result = json.loads(line[len("WRK_JSON "):])
    result["connections"] = connections
    result["threads"] = threads
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(result[k] for k in ("connect_errors", "read_errors", "write_errors",
                                               "status_errors", "timeouts"))
    return result


# --------------------------------------------------------------------------------------------
# machine description and results


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "vcpus": os.cpu_count(),
        "memory_gib": mem_gib,
        "gpu": "none",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
    }


def versions(*packages: str, python: Path | None = None) -> dict[str, str]:
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            "for p in sys.argv[1:]:\n"
            "    try: out[p] = m.version(p)\n"
            "    except m.PackageNotFoundError: out[p] = None\n"
            "print(json.dumps(out))")
    out = subprocess.run([str(python or sys.executable), "-c", code, *packages], capture_output=True, text=True)
    try:
        return json.loads(out.stdout)
    except ValueError:
        return {p: None for p in packages}


def code_version() -> dict[str, Any]:
    """The commit the servers ran, and whether gateway/ or engines/ differed from it (other
    people change the gateway while benchmarks run: a result must say which code it measured)."""
    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True)
        return out.stdout.strip()

    return {"commit": git("rev-parse", "--short", "HEAD"),
            "subject": git("log", "-1", "--format=%s"),
            "dirty": git("status", "--porcelain", "--", "gateway", "engines").splitlines()}


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    text = json.dumps(data, indent=2, default=str)
    path.write_text(text)
    (RESULTS_DIR / f"{name}-latest.json").write_text(text)
    return path


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def require_peers_venv() -> Path:
    if not (PEERS_BIN / "python").exists():
        raise SystemExit(f"{PEERS_VENV} is missing: run `bash bench/setup.sh` first")
    return PEERS_BIN
