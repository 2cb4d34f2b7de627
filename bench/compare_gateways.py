"""Before and after: the gateways of several checkouts of this repository against one Triton (echo
model) and direct Triton, at 64 connections, in interleaved rounds — requests/s, × direct, and the
CPU each gateway and Triton spent per request (the steadiest figure on a noisy machine).

    git worktree add /tmp/conch-before <commit>
    .venv/bin/python bench/compare_gateways.py /tmp/conch-before . [--auth-redis] [--rounds 4]

Each checkout's gateway runs as `python -m conch_gateway` with that checkout's `gateway/`, `crds/`
and `engines/` first on PYTHONPATH (the venv's other packages are shared), with bench/overhead.py's
request; `--auth-redis` turns on bench/auth_overhead.py's API key with quotas in a real redis-server.
Servers not being measured are frozen (SIGSTOP). Prints a markdown table and writes
bench/results/compare-gateways-<time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import auth_overhead  # noqa: E402
import overhead  # noqa: E402
from common import (RESULTS_DIR, Child, machine, markdown_table, run_wrk, say, stop_on_signals,  # noqa: E402
                    write_results)
from procstat import CpuMeter, wait_quiet  # noqa: E402


def start_gateway(name: str, checkout: Path, models_file: Path, logs: Path, env: dict[str, str]) -> tuple[Child, str]:
    """bench/auth_overhead.py's gateway, with this checkout's code first on PYTHONPATH."""
    path = ":".join(str(checkout / part) for part in ("gateway", "crds", "engines"))
    child, url = auth_overhead.start_conch(name, models_file, logs, {**env, "PYTHONPATH": path})
    return child, f"{url}/v1/generate"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkouts", nargs="+", type=Path, help="checkouts of this repository (git worktrees)")
    parser.add_argument("--auth-redis", action="store_true", help="an API key with quotas counted in Redis")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10, help="seconds of load per target and round")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    stop_on_signals()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = RESULTS_DIR / "work" / f"compare-gateways-{stamp}"
    with contextlib.ExitStack() as stack:
        triton = overhead.start_triton(work)
        stack.callback(triton.stop)
        env, key = {}, None
        if args.auth_redis:
            redis = auth_overhead.start_redis(work)
            stack.callback(redis.stop)
            key, keys_path = auth_overhead.keys_file(work)
            env = {"CONCH_AUTH": "on", "CONCH_AUTH_KEYS_FILE": str(keys_path), "CONCH_REDIS_URL": redis.url}
        resource = overhead.echo_model_resource(triton.url)
        models_file = work / "models.yaml"
        models_file.write_text(yaml.safe_dump(resource, sort_keys=False))
        targets: list[tuple[str, str, dict, Child | None]] = [
            ("direct", f"{triton.url}/v2/models/echo/generate", overhead.direct_body(resource), None)]
        for i, checkout in enumerate(args.checkouts):
            name = f"{i}:{checkout.resolve().name}"
            child, url = start_gateway(f"gateway-{i}", checkout.resolve(), models_file, work / "logs", env)
            stack.callback(child.stop)
            targets.append((name, url, overhead.gateway_request(), child))
        gateways = [child for *_, child in targets if child is not None]
        runs: dict[str, list[dict]] = {name: [] for name, *_ in targets}
        for round_ in range(-1, args.rounds):  # round -1 warms every target up
            for name, url, body, child in targets:
                for other in gateways:
                    if other is not child:
                        other.pause()
                if child is not None:
                    child.resume()
                groups = {"triton": triton.pid, **({"gateway": child.pid} if child else {})}
                if round_ >= 0:
                    wait_quiet(groups, timeout=120, say=say)
                meter = CpuMeter(groups).start()
                with auth_overhead.with_bearer(key if child is not None else None):
                    result = run_wrk(url, body, connections=args.concurrency,
                                     seconds=args.seconds if round_ >= 0 else 3, workdir=work)
                cpu = meter.stop()
                if round_ < 0:
                    continue
                n = max(result["requests"], 1)
                runs[name].append({"rps": result["rps"], "errors": result["errors"],
                                   **{f"{group}_cpu_ms": 1000 * seconds / n for group, seconds in cpu.items()}})
                say(f"round {round_ + 1}/{args.rounds} {name}: {result['rps']:.0f} req/s")
            for child in gateways:
                child.resume()
    direct = statistics.median(run["rps"] for run in runs["direct"])
    rows = []
    for name, measured in runs.items():
        rps = [run["rps"] for run in measured]
        ratio = [r / direct for r in rps]
        gateway_cpu = [run["gateway_cpu_ms"] for run in measured if "gateway_cpu_ms" in run]
        rows.append([name, f"{statistics.median(rps):.0f} ({min(rps):.0f}–{max(rps):.0f})",
                     f"{statistics.median(ratio):.2f} ({min(ratio):.2f}–{max(ratio):.2f})",
                     f"{statistics.median(gateway_cpu):.3f}" if gateway_cpu else "—",
                     f"{statistics.median(run['triton_cpu_ms'] for run in measured):.3f}"])
    table = markdown_table(["target", f"req/s @{args.concurrency}", "× direct", "gateway CPU ms/req",
                            "Triton CPU ms/req"], rows)
    print(table)
    path = write_results("compare-gateways", {"machine": machine(), "checkouts": [str(c) for c in args.checkouts],
                                              "auth_redis": args.auth_redis, "runs": runs, "table": table})
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
