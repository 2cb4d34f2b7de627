"""Gateway overhead: the same Triton (echo model) reached directly, through the Conch gateway and
through LiteLLM's proxy.

    .venv/bin/python bench/overhead.py            # after `bash bench/setup.sh`

For every target: a warm-up, then latency one request at a time (wrk -c1, at least
--min-requests requests) and throughput at --concurrency connections (wrk -c64). Targets are
measured in interleaved rounds (direct, conch, litellm, direct, conch, …) so that drift of the
machine hits all of them alike. Writes bench/results/overhead-<time>.json and prints a
markdown table.

What each target gets, so that the work behind it is the same:
- direct: POST Triton /v2/models/echo/generate with exactly the body the gateway sends for the
  request below (computed with the gateway's own code: ChatML-rendered prompt, max_tokens,
  stop_words, top_k=1 …).
- conch: POST /v1/generate {"model_id": "echo", "inputs": …, "parameters": {max_new_tokens, do_sample: false}}.
- litellm: POST /v1/chat/completions with the same system + user messages, model `triton/echo`
  at api_base …/v2/models/echo/generate. LiteLLM is given the same ChatML template, so Triton
  receives the same text_input and the echo model answers the same words on all three paths
  (checked before measuring).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    BENCH_DIR,
    RESULTS_DIR,
    Child,
    free_port_block,
    code_version,
    machine,
    markdown_table,
    post_json,
    require_peers_venv,
    run_wrk,
    say,
    versions,
    wrk_available,
    stop_on_signals,
    write_results,
)
from procstat import ForeignMeter, wait_quiet  # noqa: E402

INPUTS = ("Explain in two short paragraphs why the sky is blue during the day and turns red and orange "
          "at sunset, for a curious ten year old.")
MAX_NEW_TOKENS = 64  # the echo model answers the words of its prompt, up to this many


@dataclass
class Target:
    name: str  # "direct", "conch-1w", …
    kind: str  # "direct" | "conch" | "litellm"
    workers: int
    url: str
    body: dict
    child: Child | None = None
    expected_text: str | None = None
    rounds: list[dict] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# the stack


def start_triton(workdir: Path):
    from conch_engines import repository
    from conch_engines.triton_server import TritonPorts, TritonServer

    repo = repository.write_repository(workdir / "repository", repository.echo_files("echo"))
    port = free_port_block(3)
    triton = TritonServer(repo, workdir / "triton", TritonPorts.from_http(port))
    say(f"starting Triton (echo model) on 127.0.0.1:{port}")
    triton.start()
    return triton


def echo_model_resource(triton_url: str) -> dict:
    from conch_api import API_VERSION

    return {
        "apiVersion": API_VERSION,
        "kind": "Model",
        "metadata": {"name": "echo"},
        "spec": {"runtime": "llama-cpp", "displayName": "echo", "promptFamily": "chatml"},
        "status": {
            "phase": "Ready",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Bench", "message": "local Triton"}],
            "endpoint": triton_url,
            "tritonModel": "echo",
            "interface": "ensemble",
        },
    }


def gateway_request() -> dict:
    return {"model_id": "echo", "inputs": INPUTS,
            "parameters": {"max_new_tokens": MAX_NEW_TOKENS, "do_sample": False}}


def direct_body(resource_: dict) -> dict:
    """Exactly the Triton body the gateway sends for gateway_request(), built by the gateway's
    own functions (read-only use of its code)."""
    from conch_api import Model
    from conch_gateway.backends.codecs import CODECS
    from conch_gateway.protocol.generate import GenerateRequest
    from conch_gateway.registry.base import served_model
    from conch_gateway.services.generate import render_prompt, to_generation_request

    model = served_model(Model.model_validate(resource_))
    request = GenerateRequest.model_validate(gateway_request())
    prompt = render_prompt(model, request.scenario, request.inputs)
    return CODECS[model.interface.value].request_body(to_generation_request(request.parameters, prompt, model),
                                                      stream=False)


def litellm_request() -> dict:
    from conch_gateway.prompts import scenario_messages

    return {"model": "echo", "messages": scenario_messages("base", INPUTS), "max_tokens": MAX_NEW_TOKENS}


def litellm_config(triton_url: str) -> dict:
    from conch_gateway.prompts import CHATML

    return {
        "model_list": [{
            "model_name": "echo",
            "litellm_params": {"model": "triton/echo", "api_base": f"{triton_url}/v2/models/echo/generate"},
        }],
        "litellm_settings": {
            "drop_params": True,
            # LiteLLM's Triton provider renders messages with prompt_factory(), which for an
            # unknown model fetches tokenizer_config.json from the Hugging Face hub on every
            # request (and falls back to joining the contents when that fails). Giving it the
            # template here keeps it offline and makes it render the same ChatML as Conch.
            "known_tokenizer_config": {
                "echo": {"status": "success",
                         "tokenizer": {"chat_template": CHATML, "bos_token": "", "eos_token": "<|im_end|>"}},
            },
        },
        "general_settings": {
            "disable_spend_logs": True,
            # No auth, like the Conch gateway (LiteLLM refuses to start without a master key otherwise).
            "dangerously_permit_weak_or_unset_master_key": True,
        },
    }


def start_conch(workers: int, models_file: Path, logs: Path, extra_env: dict[str, str] | None = None
                ) -> tuple[Child, str]:
    port = free_port_block(1)
    env = {"PORT": str(port), "CONCH_HOST": "127.0.0.1", "CONCH_MODEL_SOURCE": "local",
           "CONCH_LOCAL_MODELS_FILE": str(models_file), "CONCH_LOG_LEVEL": "warning", **(extra_env or {})}
    if workers == 1:
        argv = [sys.executable, "-m", "conch_gateway"]  # exactly what `make up` runs
    else:
        argv = [sys.executable, "-m", "uvicorn", "conch_gateway.app:create_app", "--factory",
                "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
                "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
    child = Child(f"conch-{workers}w", argv, logs / f"conch-{workers}w.log", env=env).start()
    child.wait_http(f"http://127.0.0.1:{port}/health", timeout=60, accept=(200, 503))
    return child, f"http://127.0.0.1:{port}"


def start_litellm(workers: int, config_file: Path, logs: Path) -> tuple[Child, str]:
    peers = require_peers_venv()
    port = free_port_block(1)
    argv = [str(peers / "litellm"), "--config", str(config_file), "--host", "127.0.0.1", "--port", str(port),
            "--num_workers", str(workers)]
    env = {"LITELLM_LOG": "ERROR", "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true"}
    child = Child(f"litellm-{workers}w", argv, logs / f"litellm-{workers}w.log", env=env, cwd=config_file.parent)
    child.start()
    child.wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout=180)
    return child, f"http://127.0.0.1:{port}"


# --------------------------------------------------------------------------------------------
# measuring


def answer_text(kind: str, payload: dict) -> str:
    if kind == "direct":
        value = payload["text_output"]
        return value[0] if isinstance(value, list) else value
    if kind == "conch":
        return payload["generated_text"]
    return payload["choices"][0]["message"]["content"]


def check(target: Target) -> str:
    status, payload = post_json(target.url, target.body, timeout=60)
    if status != 200:
        raise RuntimeError(f"{target.name}: HTTP {status}: {json.dumps(payload)[:500]}")
    return answer_text(target.kind, payload)


def _wait_answering(target: Target, timeout: float = 30.0) -> None:
    """After a resume, until the target answers 200 (the gateway may briefly think Triton down
    if a health probe was in flight when it was frozen)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check(target)
            return
        except (RuntimeError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def measure(target: Target, args, workdir: Path, groups: dict[str, int]) -> dict[str, Any]:
    say(f"{target.name}: warm-up")
    wait_quiet(groups, max_foreign_cores=args.max_foreign, timeout=args.quiet_timeout, say=say)
    warm = run_wrk(target.url, target.body, connections=1, seconds=args.warmup, workdir=workdir)
    run_wrk(target.url, target.body, connections=args.concurrency, seconds=args.warmup, workdir=workdir)
    # long enough for --min-requests sequential requests, with margin
    seq_seconds = max(args.seq_seconds, int(1.3 * args.min_requests / max(warm["rps"], 1.0)) + 1)
    say(f"{target.name}: sequential latency, {seq_seconds}s")
    sequential = _run(target, 1, seq_seconds, workdir, groups, args)
    say(f"{target.name}: {args.concurrency} connections, {args.conc_seconds}s")
    concurrent = _run(target, args.concurrency, args.conc_seconds, workdir, groups, args)
    return {"sequential": sequential, "concurrent": concurrent}


def _run(target: Target, connections: int, seconds: int, workdir: Path, groups: dict[str, int], args) -> dict:
    """One wrk run on a quiet machine: waits until other users' work is below --max-foreign
    cores, and runs again (up to --attempts) when it was not during the run; keeps the
    cleanest attempt."""
    attempts = []
    for attempt in range(1, args.attempts + 1):
        time.sleep(args.pause)
        wait_quiet(groups, max_foreign_cores=args.max_foreign, timeout=args.quiet_timeout, say=say)
        meter = ForeignMeter(groups).start()
        result = run_wrk(target.url, target.body, connections=connections, seconds=seconds, workdir=workdir)
        result["machine"] = meter.stop()
        result["cpu_seconds"] = result["machine"]["cpu_seconds"]
        result["cpu_ms_per_request"] = {k: round(1000 * v / max(result["requests"], 1), 3)
                                        for k, v in result["cpu_seconds"].items()}
        attempts.append(result)
        if result["errors"]:
            say(f"WARNING {target.name}: {result['errors']} errors in {result['requests']} requests")
        disturbance = result["machine"]["disturbance_cores"]
        if disturbance <= args.max_foreign:
            break
        say(f"{target.name}: other work / steal took {disturbance:.2f} cores during the run "
            f"(attempt {attempt}/{args.attempts})")
    best = min(attempts, key=lambda r: r["machine"]["disturbance_cores"])
    best["attempts"] = len(attempts)
    best["disturbance_cores_per_attempt"] = [a["machine"]["disturbance_cores"] for a in attempts]
    return best


# --------------------------------------------------------------------------------------------
# reporting


def summarize(targets: list[Target]) -> dict[str, Any]:
    def med(values):
        values = sorted(values)
        n = len(values)
        return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2

    summary = {}
    for t in targets:
        seq = [r["sequential"] for r in t.rounds]
        con = [r["concurrent"] for r in t.rounds]
        summary[t.name] = {
            "p50_ms": [s["latency_us"]["50"] / 1000 for s in seq],
            "p90_ms": [s["latency_us"]["90"] / 1000 for s in seq],
            "p99_ms": [s["latency_us"]["99"] / 1000 for s in seq],
            "seq_requests": [s["requests"] for s in seq],
            "rps": [c["rps"] for c in con],
            "conc_p50_ms": [c["latency_us"]["50"] / 1000 for c in con],
            "conc_p99_ms": [c["latency_us"]["99"] / 1000 for c in con],
            "errors": sum(s["errors"] for s in seq) + sum(c["errors"] for c in con),
            "server_cpu_ms_per_request_conc": [c["cpu_ms_per_request"].get(t.name) for c in con],
            "triton_cpu_ms_per_request_conc": [c["cpu_ms_per_request"].get("triton") for c in con],
            "bench_wrk_cpu_cores_conc": [c["cpu_seconds"]["bench+wrk"] / (c["duration_us"] / 1e6) for c in con],
            "foreign_cores_max": max(r["machine"].get("disturbance_cores", r["machine"]["foreign_cores"])
                                     for r in seq + con),
        }
        for key in ("p50_ms", "p90_ms", "p99_ms", "rps"):
            summary[t.name][key + "_median"] = med(summary[t.name][key])

    direct = summary["direct"]
    for name, s in summary.items():
        n = len(s["p50_ms"])
        # added latency per round against the direct measurement of the same round
        s["added_p50_ms"] = [s["p50_ms"][i] - direct["p50_ms"][i] for i in range(n)]
        s["added_p99_ms"] = [s["p99_ms"][i] - direct["p99_ms"][i] for i in range(n)]
        s["rps_ratio"] = [s["rps"][i] / direct["rps"][i] for i in range(n)]
        for key in ("added_p50_ms", "added_p99_ms", "rps_ratio"):
            s[key + "_median"] = med(s[key])
    return summary


def fmt_range(values: list[float], digits: int) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{min(values):.{digits}f}–{max(values):.{digits}f}"


def table(summary: dict[str, Any]) -> str:
    rows = []
    for name, s in summary.items():
        is_direct = name == "direct"
        rows.append([
            name,
            f"{s['p50_ms_median']:.2f} ({fmt_range(s['p50_ms'], 2)})",
            f"{s['p99_ms_median']:.2f} ({fmt_range(s['p99_ms'], 2)})",
            "—" if is_direct else f"{s['added_p50_ms_median']:+.2f} ({fmt_range(s['added_p50_ms'], 2)})",
            "—" if is_direct else f"{s['added_p99_ms_median']:+.2f} ({fmt_range(s['added_p99_ms'], 2)})",
            f"{s['rps_median']:.0f} ({fmt_range(s['rps'], 0)})",
            "1.00" if is_direct else f"{s['rps_ratio_median']:.2f} ({fmt_range(s['rps_ratio'], 2)})",
            "—" if is_direct else f"{_mean(s['server_cpu_ms_per_request_conc']):.2f}",
            f"{_mean(s['triton_cpu_ms_per_request_conc']):.2f}",
            f"{s['foreign_cores_max']:.2f}",
            s["errors"],
        ])
    return markdown_table(
        ["target", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms", "req/s @64", "× direct",
         "proxy CPU ms/req", "Triton CPU ms/req", "other load (cores, max)", "errors"], rows)


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else float("nan")


def targets_verdict(summary: dict[str, Any]) -> list[str]:
    lines = []
    litellm = {n: s for n, s in summary.items() if n.startswith("litellm")}
    best_litellm_rps = max((s["rps_median"] for s in litellm.values()), default=None)
    best_litellm_p50 = min((s["added_p50_ms_median"] for s in litellm.values()), default=None)
    for name, s in summary.items():
        if not name.startswith("conch"):
            continue
        checks = [
            ("added p50 ≤ 1 ms", s["added_p50_ms_median"] <= 1.0),
            ("added p99 ≤ 3 ms", s["added_p99_ms_median"] <= 3.0),
            ("≥ 0.8× direct req/s", s["rps_ratio_median"] >= 0.8),
        ]
        if best_litellm_rps is not None:
            checks.append(("ahead of LiteLLM", s["rps_median"] > best_litellm_rps
                           and s["added_p50_ms_median"] < best_litellm_p50))
        lines.append(f"{name}: " + ", ".join(f"{label}: {'PASS' if ok else 'MISS'}" for label, ok in checks))
    return lines


# --------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=2, help="interleaved measurement rounds per target")
    p.add_argument("--warmup", type=int, default=3, help="seconds of warm-up (each of -c1 and -cN)")
    p.add_argument("--seq-seconds", type=int, default=15, help="at least this long at one connection")
    p.add_argument("--min-requests", type=int, default=1000, help="at least this many sequential requests")
    p.add_argument("--conc-seconds", type=int, default=15, help="seconds at --concurrency connections")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--pause", type=float, default=1.0, help="seconds of rest between runs")
    p.add_argument("--max-foreign", type=float, default=0.1,
                   help="most CPU (cores, average) other users' work plus hypervisor steal may take during a run "
                        "before it is repeated")
    p.add_argument("--attempts", type=int, default=3, help="tries per run when the machine was busy")
    p.add_argument("--quiet-timeout", type=float, default=300, help="longest wait for a quiet machine (s)")
    p.add_argument("--conch-workers", default="1,2", help="uvicorn worker counts to measure for the gateway")
    p.add_argument("--litellm-workers", default="1,2", help="worker counts for LiteLLM ('' skips LiteLLM)")
    p.add_argument("--keep-running", action="store_true", help="leave the servers up at the end (Ctrl-C stops)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    stop_on_signals()
    wrk_available()
    conch_workers = [int(w) for w in args.conch_workers.split(",") if w.strip()]
    litellm_workers = [int(w) for w in args.litellm_workers.split(",") if w.strip()]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = RESULTS_DIR / "work" / f"overhead-{stamp}"
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started_at = time.time()
    host = machine()
    code = code_version()

    triton = start_triton(workdir)
    children: list[Child] = []
    try:
        resource_ = echo_model_resource(triton.url)
        models_file = workdir / "models.yaml"
        models_file.write_text(yaml.safe_dump(resource_, sort_keys=False))
        litellm_file = workdir / "litellm.yaml"
        litellm_file.write_text(yaml.safe_dump(litellm_config(triton.url), sort_keys=False))

        targets = [Target("direct", "direct", 0, f"{triton.url}/v2/models/echo/generate", direct_body(resource_))]
        for w in conch_workers:
            say(f"starting the Conch gateway, {w} worker(s)")
            child, url = start_conch(w, models_file, logs)
            children.append(child)
            targets.append(Target(f"conch-{w}w", "conch", w, f"{url}/v1/generate", gateway_request(), child))
        for w in litellm_workers:
            say(f"starting LiteLLM proxy, {w} worker(s)")
            child, url = start_litellm(w, litellm_file, logs)
            children.append(child)
            targets.append(Target(f"litellm-{w}w", "litellm", w, f"{url}/v1/chat/completions", litellm_request(), child))

        # Same work behind every target: the echo model must answer the same words on each path.
        for t in targets:
            t.expected_text = check(t)
        reference = targets[0].expected_text.strip()
        for t in targets[1:]:
            if t.expected_text.strip() != reference:
                raise RuntimeError(f"{t.name} answers {t.expected_text!r}, direct answers {reference!r}")
        say(f"all targets answer the same {len(reference.split())} words")

        groups = {"triton": triton.pid, **{t.name: t.child.pid for t in targets if t.child}}
        for r in range(args.rounds):
            for t in targets:
                say(f"round {r + 1}/{args.rounds}")
                # only Triton and the measured target run; the other servers are frozen
                for other in targets:
                    if other.child is not None and other is not t:
                        other.child.pause()
                if t.child is not None:
                    t.child.resume()
                    _wait_answering(t)
                t.rounds.append(measure(t, args, workdir / "wrk", groups))
        for t in targets:
            if t.child is not None:
                t.child.resume()

        summary = summarize(targets)
        data = {
            "benchmark": "overhead",
            "command": "python bench/overhead.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started_at)),
            "wall_seconds": round(time.time() - started_at, 1),
            "machine": host,
            "code": code,
            "loadavg_at_end": list(__import__("os").getloadavg()),
            "versions": {"project": versions("fastapi", "uvicorn", "starlette", "pydantic", "aiohttp", "orjson",
                                             "nvidia-pytriton", "tritonclient"),
                         "peers": versions("litellm", "fastapi", "uvicorn", python=BENCH_DIR / ".venv-peers/bin/python")},
            "settings": vars(args),
            "requests": {t.name: {"url": t.url, "body": t.body} for t in targets},
            "echo_answer": reference,
            "rounds": {t.name: t.rounds for t in targets},
            "summary": summary,
        }
        path = write_results("overhead", data)
        print(table(summary))
        print()
        for line in targets_verdict(summary):
            print(f"- {line}")
        print(f"\nresults: {path}")
        if args.keep_running:
            say("servers are up; Ctrl-C stops them: " + ", ".join(f"{t.name}={t.url}" for t in targets))
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        return 0
    finally:
        for child in reversed(children):
            child.stop()
        triton.stop()


if __name__ == "__main__":
    sys.exit(main())
