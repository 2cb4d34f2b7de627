"""Where the Conch gateway spends its CPU under load: py-spy samples one gateway worker while
wrk drives /v1/generate (echo model, same request as bench/overhead.py) at 64 connections.

    .venv/bin/python bench/profile_gateway.py            # after `bash bench/setup.sh`

Writes bench/results/profile-<time>/ with py-spy's raw stacks (collapsed format: any flame
graph tool draws them, e.g. speedscope or inferno) and top.md — the hottest functions and lines by own time, and by inclusive time
for frames of the gateway's own code — and prints top.md.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import auth_overhead  # noqa: E402
from common import RESULTS_DIR, REPO_ROOT, require_peers_venv, run_wrk, say, stop_on_signals  # noqa: E402
from overhead import echo_model_resource, gateway_request, start_conch, start_triton  # noqa: E402
from procstat import CpuMeter, wait_quiet  # noqa: E402

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")


def parse_collapsed(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        stack, count = line.rsplit(" ", 1)
        stacks.append((stack.split(";"), int(count)))
    return stacks


def short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return path


def frame_parts(frame: str) -> tuple[str, str, str]:
    m = _FRAME.match(frame)
    if not m:
        return frame, "", ""
    return m["func"], short(m["file"]), m["line"]


IDLE_LEAVES = ("threading.py Condition.wait", "queue.py Queue.get")

# Where each busy sample goes, first matching rule wins (checked from the leaf up).
CATEGORIES = [
    ("sync dependencies run in the thread pool (anyio / run_in_threadpool)",
     ("starlette/concurrency.py", "anyio/", "threading.py", "queue.py")),
    ("Triton client (aiohttp)", ("aiohttp/", "yarl/", "multidict/")),
    ("Triton client (the gateway's httptools client, backends/http.py)", ("conch_gateway/backends/http.py",)),
    ("Prometheus metrics", ("prometheus_client/",)),
    ("prompt rendering (jinja2)", ("jinja2/", "conch_gateway/prompts.py")),
    ("request/response validation (pydantic)", ("pydantic/", "pydantic_core/")),
    ("JSON (orjson/json)", ("json/", "orjson")),
    ("FastAPI routing, dependencies, endpoint plumbing", ("fastapi/",)),
    ("Starlette middleware / responses", ("starlette/",)),
    ("HTTP server (uvicorn/httptools)", ("uvicorn/", "httptools")),
    ("gateway code itself (conch_gateway)", ("conch_gateway/",)),
    ("event loop (uvloop/asyncio, incl. socket I/O)", ("asyncio/", "uvloop")),
]


def is_idle(frames: list[str]) -> bool:
    func, file, _ = frame_parts(frames[-1])
    return f"{file} {func}" in IDLE_LEAVES


def categorize(frames: list[str]) -> str:
    for frame in reversed(frames):
        _, file, _ = frame_parts(frame)
        for name, prefixes in CATEGORIES:
            if any(file.startswith(p) or p in file for p in prefixes):
                return name
    return "other"


def report(stacks: list[tuple[list[str], int]], top: int = 25) -> str:
    idle = sum(c for f, c in stacks if is_idle(f))
    stacks = [(f, c) for f, c in stacks if not is_idle(f)]
    total = sum(c for _, c in stacks)
    by_category = collections.Counter()
    for frames, count in stacks:
        by_category[categorize(frames)] += count
    by_line, by_func, by_file = collections.Counter(), collections.Counter(), collections.Counter()
    incl_func = collections.Counter()
    for frames, count in stacks:
        func, file, line = frame_parts(frames[-1])
        by_line[f"{file}:{line} {func}"] += count
        by_func[f"{file} {func}"] += count
        by_file[file.split("/")[0] if "/" in file else file] += count
        seen = set()
        for frame in frames:
            f, fl, _ = frame_parts(frame)
            key = f"{fl} {f}"
            if key not in seen:
                seen.add(key)
                incl_func[key] += count
    own_code = collections.Counter()
    for frames, count in stacks:
        # inclusive time per *line* of the gateway's own code (where to look to fix it)
        seen = set()
        for frame in frames:
            f, fl, ln = frame_parts(frame)
            if "conch_gateway" in fl and (key := f"{fl}:{ln} {f}") not in seen:
                seen.add(key)
                own_code[key] += count

    def block(title: str, counter: collections.Counter, n: int = top) -> str:
        lines = [f"### {title}", "", "| % of samples | where |", "|---:|---|"]
        lines += [f"| {100 * c / total:.1f} | `{k}` |" for k, c in counter.most_common(n)]
        return "\n".join(lines)

    return "\n\n".join([
        f"{total} busy samples (py-spy; {idle} more samples of idle thread-pool workers waiting "
        "for work are left out). Own time is attributed to the innermost frame; time in C code "
        "(uvloop, socket syscalls) shows up on the Python line that called it.",
        block("Own time by kind of work (innermost recognised frame)", by_category, 20),
        block("Own (self) time by package", by_file, 15),
        block("Own (self) time by function", by_func),
        block("Own (self) time by line", by_line),
        block("Inclusive time, gateway code (conch_gateway), by line", own_code, 40),
        block("Inclusive time by function (all code)", incl_func, 60),
    ])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=30)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--auth-redis", action="store_true",
                   help="profile with everything on: auth (an API key) and quotas counted in a real redis-server")
    args = p.parse_args(argv)
    stop_on_signals()
    peers = require_peers_venv()
    out = RESULTS_DIR / f"profile-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    triton = start_triton(out / "work")
    gateway = redis = None
    extra_env: dict[str, str] = {}
    stack = contextlib.ExitStack()
    try:
        if args.auth_redis:  # as bench/auth_overhead.py's conch-auth-redis target
            redis = auth_overhead.start_redis(out / "work")
            key, keys_path = auth_overhead.keys_file(out / "work")
            extra_env = {"CONCH_AUTH": "on", "CONCH_AUTH_KEYS_FILE": str(keys_path), "CONCH_REDIS_URL": redis.url}
            stack.enter_context(auth_overhead.with_bearer(key))
        resource_ = echo_model_resource(triton.url)
        models_file = out / "work" / "models.yaml"
        models_file.write_text(yaml.safe_dump(resource_, sort_keys=False))
        gateway, url = start_conch(args.workers, models_file, out / "work" / "logs", extra_env)
        target = f"{url}/v1/generate"
        say("warm-up")
        run_wrk(target, gateway_request(), connections=args.concurrency, seconds=3, workdir=out / "work")
        # the process serving requests: the gateway itself, or a uvicorn worker
        pid = gateway.pid
        if args.workers > 1:
            children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
            pid = int(children[-1])
        wait_quiet({"triton": triton.pid, "conch": gateway.pid}, timeout=300, say=say)
        say(f"profiling pid {pid} for {args.seconds}s under {args.concurrency} connections")
        raw = out / "stacks.txt"
        load = threading.Thread(target=lambda: results.append(run_wrk(
            target, gateway_request(), connections=args.concurrency, seconds=args.seconds + 4, workdir=out / "work")))
        results: list[dict] = []
        meter = CpuMeter({"gateway": gateway.pid, "triton": triton.pid}).start()
        load.start()
        time.sleep(2)
        subprocess.run([str(peers / "py-spy"), "record", "-p", str(pid), "-d", str(args.seconds), "-r",
                        str(args.rate), "--nonblocking", "-f", "raw", "-o", str(raw)],
                       check=True, capture_output=True)
        load.join()
        cpu = meter.stop()
        per_request = {name: 1000 * seconds / max(results[0]["requests"], 1) for name, seconds in cpu.items()}
        stacks = parse_collapsed(raw)
        text = (f"# Conch gateway profile\n\n{args.workers} worker(s), wrk {args.concurrency} connections, "
                f"{'auth + quotas in Redis, ' if args.auth_redis else ''}{results[0]['rps']:.0f} req/s during the profile (py-spy --nonblocking at {args.rate} Hz "
                f"slows the gateway somewhat). CPU per request over the whole load run: gateway "
                f"{per_request['gateway']:.3f} ms, Triton {per_request['triton']:.3f} ms.\n\n" + report(stacks))
        (out / "top.md").write_text(text)
        print(text)
        print(f"\nfiles: {out}")
        return 0
    finally:
        if gateway is not None:
            gateway.stop()
        if redis is not None:
            redis.stop()
        stack.close()
        triton.stop()


if __name__ == "__main__":
    sys.exit(main())
