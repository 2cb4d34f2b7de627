"""Streaming: time to first token, gaps between tokens and streamed tokens/s, through the Conch
gateway against Triton reached directly and against llama-cpp-python's own OpenAI server.

    .venv/bin/python bench/streaming.py          # after `bash bench/setup.sh`

One Triton serves the bundled SmolLM2 (llama.cpp, n_ctx 4096, 2 threads) and the `echo` model;
two gateways route to it (one per stream transport); `llama_cpp.server` serves the same GGUF
with the same settings.
Every target streams the same prompt with the same greedy settings and max tokens:

- direct:       POST Triton /v2/models/<m>/generate_stream with exactly the body the gateway sends
                Triton for the request below (built with the gateway's own code);
- conch:        POST gateway /v1/completions {"stream": true, "temperature": 0} (raw prompt, the
                ChatML text); the gateway streams from Triton's `generate_stream` (its default);
- conch-grpc:   the same through a second gateway with CONCH_STREAM_TRANSPORT=grpc, which streams
                over gRPC `ModelStreamInfer` (the Models carry `grpcAddress`, as the operator's do);
- llama-server: POST llama_cpp.server /v1/completions {"stream": true, "temperature": 0, …};
- direct-grpc:  (echo only) Triton's gRPC ModelStreamInfer with the gateway's request, from a plain
                grpc client: the transport the gateway uses for streams, without the gateway.

Three phases, each in interleaved rounds — every round sends one request to every target, in a
rotating order — so drift of this noisy machine hits all targets alike; a round in which other
work or hypervisor steal took more than --max-foreign cores (or a request failed) is run again:

1. SmolLM2, 8 prompts, --max-tokens (128): TTFT with the whole prompt processed (before each
   request the target's llama.cpp context is primed with the same short prompt, as in
   generation.py, since llama-cpp-python reuses the longest cached prompt prefix), gaps, tokens/s;
2. SmolLM2, one prompt already in the KV cache, 8 tokens: TTFT is one decoding step plus the
   serving stack, so the stack's share is not buried in prompt-processing noise;
3. echo (answers at once): the gateway's own cost on the way to the first token.

The client reads the SSE stream line by line (http.client, keep-alive) and timestamps each
`data:` event on arrival (time.perf_counter). TTFT = request sent → first event carrying text;
gaps = time between consecutive events carrying text; tokens/s = generated tokens / (request
sent → end of stream). Tokens: the gateway's usage chunk, Triton's num_output_tokens, and for
llama-server (which sends no usage when streaming) max_tokens when it finished for length.
CPU per token: each server's process group, over its own target's requests.
"""

from __future__ import annotations

import argparse
import http.client
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    RESULTS_DIR,
    Child,
    code_version,
    free_port_block,
    machine,
    markdown_table,
    require_peers_venv,
    routed,
    say,
    start_gateway,
    stop_on_signals,
    versions,
    write_results,
)
from generation import PRIME, PROMPTS, libllama_digest, llama_server_body, triton_body_and_prompt  # noqa: E402
from overhead import INPUTS as ECHO_PROMPT, echo_model_resource  # noqa: E402
from procstat import CpuMeter, ForeignMeter, wait_quiet  # noqa: E402


class Target:
    """One streaming path: where to POST, the body per prompt, how to prime the KV cache. One
    keep-alive connection (http.client: a third of httpx's CPU per streamed event)."""

    def __init__(self, name: str, base: str, path: str, bodies: list[dict], prime: tuple[str, dict] | None = None):
        self.name, self.path, self.bodies, self.prime = name, path, [orjson.dumps(b) for b in bodies], prime
        url = urlsplit(base)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)

    def _send(self, path: str, data: bytes) -> http.client.HTTPResponse:
        for attempt in (1, 2):
            try:
                self.conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
                return self.conn.getresponse()
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                self.conn.close()  # the server closed the idle keep-alive connection: once more
                if attempt == 2:
                    raise

    def prime_cache(self) -> None:
        if self.prime:
            r = self._send(self.prime[0], orjson.dumps(self.prime[1]))
            if r.status != 200:
                raise RuntimeError(f"{self.name} prime: HTTP {r.status}: {r.read()[:500]!r}")
            r.read()

    def stream(self, i: int) -> dict:
        """Sends body i and reads the stream; returns arrival times of the events carrying text."""
        cpu0 = _cpu()
        times, text, tokens, usage, finish, done = [], [], 0, None, None, None
        t0 = time.perf_counter()
        r = self._send(self.path, self.bodies[i])
        if r.status != 200:
            raise RuntimeError(f"{self.name}: HTTP {r.status}: {r.read()[:500]!r}")
        while line := r.readline():
            if not line.startswith(b"data:"):
                continue
            now = time.perf_counter()
            data = line[5:].strip()
            if data == b"[DONE]":
                done = now
                continue
            event = orjson.loads(data)
            if "error" in event:
                raise RuntimeError(f"{self.name}: error event {data[:500]!r}")
            if "choices" in event:  # OpenAI chunk (gateway, llama-server)
                piece = "".join(c.get("text") or "" for c in event["choices"])
                finish = next((c["finish_reason"] for c in event["choices"] if c.get("finish_reason")), finish)
                if event.get("usage"):
                    usage = event["usage"]["completion_tokens"]
            else:  # Triton generate_stream
                piece = event.get("text_output") or ""
                piece = piece[0] if isinstance(piece, list) else piece
                tokens += int(event.get("num_output_tokens") or 0)
            if piece:
                times.append(now - t0)
                text.append(piece)
        end = (done or time.perf_counter()) - t0
        if usage is None and not tokens and finish == "length":
            usage = json.loads(self.bodies[i])["max_tokens"]  # llama-server: no usage when streaming
        return _result(times, text, usage if usage is not None else tokens, finish, end, cpu0)

    def measure(self, i: int, groups: dict[str, int]) -> dict:
        """stream(i) after priming, with the CPU each server's process group spent on it; or what
        went wrong (a failed request is reported, not fatal)."""
        try:
            self.prime_cache()
            meter = CpuMeter(groups).start()
            result = self.stream(i)
            return {**result, "server_cpu_s": meter.stop()}
        except Exception as exc:  # noqa: BLE001
            self.close()  # a half-read stream leaves the connection unusable; the next request reconnects
            return {"error": f"{type(exc).__name__}: {exc}"[:500]}

    def close(self) -> None:
        self.conn.close()


class GrpcTarget(Target):
    """Triton's gRPC `ModelStreamInfer` straight from the client (grpc's sync API), with the
    request the gateway builds: what the gateway's own transport costs, without the gateway."""

    def __init__(self, name: str, address: str, model: str, bodies: list[dict]):
        import grpc
        from conch_gateway.backends import grpc_tensors
        from conch_gateway.backends.codecs import DATATYPES
        from tritonclient.grpc import service_pb2_grpc

        self.name, self.prime, self.codec = name, None, grpc_tensors
        self.channel = grpc.insecure_channel(address)
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        self.requests = [grpc_tensors.infer_request(model, b, DATATYPES, batched=True) for b in bodies]

    def stream(self, i: int) -> dict:
        cpu0 = _cpu()
        times, text, tokens = [], [], 0
        t0 = time.perf_counter()
        for message in self.stub.ModelStreamInfer(iter([self.requests[i]])):
            now = time.perf_counter()
            if message.error_message:
                raise RuntimeError(f"{self.name}: {message.error_message}")
            out = self.codec.decode_outputs(message.infer_response) if message.infer_response.outputs else {}
            piece = out.get("text_output") or ""
            tokens += int(out.get("num_output_tokens") or 0)
            if piece:
                times.append(now - t0)
                text.append(piece)
            if self.codec.is_final(message.infer_response):
                break
        return _result(times, text, tokens, None, time.perf_counter() - t0, cpu0)

    def close(self) -> None:
        self.channel.close()


def _result(times: list[float], text: list[str], tokens: int | None, finish, end: float, cpu0: float) -> dict:
    return {"ttft_s": times[0] if times else None, "event_s": times, "end_s": end, "tokens": tokens or None,
            "finish": finish, "text": "".join(text), "client_cpu_s": _cpu() - cpu0}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_rounds(targets: list[Target], rounds: int, prompts: int, groups: dict[str, int], args, label: str,
               quiet_every: int = 1) -> list[dict]:
    samples = []
    for rnd in range(rounds):
        k = rnd % len(targets)
        order = targets[k:] + targets[:k]
        i = rnd % prompts
        tries = []
        for attempt in range(args.attempts):
            if rnd % quiet_every == 0 or attempt:
                wait_quiet(groups, max_foreign_cores=args.max_foreign, window=0.5, timeout=args.quiet_timeout, say=say)
            meter = ForeignMeter(groups).start()
            got = {t.name: t.measure(i, groups) for t in order}
            m = meter.stop()
            errors = sum("error" in s for s in got.values())
            tries.append((errors, m["disturbance_cores"], got))
            if m["disturbance_cores"] <= args.max_foreign and not errors:
                break
        errors, disturbance, got = min(tries, key=lambda t: t[:2])
        for name, s in got.items():
            samples.append({"round": rnd, "prompt": i, "target": name, "foreign_cores": disturbance,
                            "attempts": len(tries), **s})
        for name, s in got.items():
            if "error" in s:
                say(f"{label} round {rnd + 1}: {name} failed: {s['error']}")
        if (rnd + 1) % max(1, rounds // 8) == 0 or rnd + 1 == rounds:
            say(f"{label} round {rnd + 1}/{rounds}: " + ", ".join(
                f"{n} ttft {1000 * s['ttft_s']:.1f} ms {s['tokens']} tok" for n, s in got.items() if "error" not in s))
    return samples


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if len(values) == 1:
        return values[0]
    pos = (len(values) - 1) * q / 100
    lo = int(pos)
    return values[lo] + (values[min(lo + 1, len(values) - 1)] - values[lo]) * (pos - lo)


def summarize(samples: list[dict], names: list[str]) -> dict:
    out = {}
    for name in names:
        failed = [s for s in samples if s["target"] == name and "error" in s]
        mine = [s for s in samples if s["target"] == name and "error" not in s and s["ttft_s"] is not None]
        ttft = [1000 * s["ttft_s"] for s in mine]
        gaps = [1000 * (b - a) for s in mine for a, b in zip(s["event_s"], s["event_s"][1:])]
        counted = [s for s in mine if s["tokens"]]
        out[name] = {
            "requests": len(mine),
            "failed_requests": len(failed),
            "max_gap_ms": max((1000 * (b - a) for s in mine for a, b in zip(s["event_s"], s["event_s"][1:])), default=None),
            "ttft_ms": {f"p{q}": pct(ttft, q) for q in (50, 90, 99)},
            "gap_ms": {f"p{q}": pct(gaps, q) for q in (50, 90, 99)} if gaps else None,
            "gaps": len(gaps),
            "events_per_request": statistics.mean(len(s["event_s"]) for s in mine),
            "tokens": sum(s["tokens"] for s in counted),
            "tokens_per_s": (sum(s["tokens"] for s in counted) / sum(s["end_s"] for s in counted)) if counted else None,
            "tokens_per_s_request_median": statistics.median(s["tokens"] / s["end_s"] for s in counted) if counted else None,
            "uncounted_requests": len(mine) - len(counted),
            "client_cpu_ms_per_request": 1000 * statistics.mean(s["client_cpu_s"] for s in mine),
            # CPU of each server (process group) per generated token, this target's requests only
            "server_cpu_ms_per_token": {g: 1000 * sum(s["server_cpu_s"][g] for s in counted)
                                        / max(1, sum(s["tokens"] for s in counted))
                                        for g in (counted[0]["server_cpu_s"] if counted else {})},
            "finish": sorted({str(s["finish"]) for s in mine}),
        }
    ok = [s for s in samples if "error" not in s and s["ttft_s"] is not None]
    direct = {s["round"]: s for s in ok if s["target"] == "direct"}
    for name, o in out.items():
        if name != "direct" and direct:
            paired = [1000 * (s["ttft_s"] - direct[s["round"]]["ttft_s"]) for s in ok
                      if s["target"] == name and s["round"] in direct]
            o["added_ttft_ms_p50"] = o["ttft_ms"]["p50"] - out["direct"]["ttft_ms"]["p50"]
            o["added_ttft_ms_paired_median"] = statistics.median(paired)
            o["ttft_ratio_p50"] = o["ttft_ms"]["p50"] / out["direct"]["ttft_ms"]["p50"]
    if "llama-server" in out:
        base = out["llama-server"]["tokens_per_s"]
        for o in out.values():
            o["tokens_per_s_vs_llama_server"] = o["tokens_per_s"] / base if o["tokens_per_s"] and base else None
    return out


def table(summary: dict) -> str:
    def trio(d):
        return "—" if d is None else f"{d['p50']:.2f} / {d['p90']:.2f} / {d['p99']:.2f}"

    rows = []
    for name, o in summary.items():
        added = "—" if "added_ttft_ms_p50" not in o else (
            f"{o['added_ttft_ms_p50']:+.2f} ({o['added_ttft_ms_paired_median']:+.2f}), ×{o['ttft_ratio_p50']:.3f}")
        tps = "—" if o["tokens_per_s"] is None else f"{o['tokens_per_s']:.1f} ({o['tokens_per_s_request_median']:.1f})"
        vs = o.get("tokens_per_s_vs_llama_server")
        rows.append([name, trio(o["ttft_ms"]), added, trio(o["gap_ms"]), tps,
                     "—" if vs is None else f"{vs:.3f}",
                     " / ".join(f"{v:.2f}" for v in o["server_cpu_ms_per_token"].values()),
                     f"{o['client_cpu_ms_per_request']:.1f}", o["failed_requests"]])
    return markdown_table(["target", "TTFT ms p50 / p90 / p99", "added TTFT p50 ms (paired), × direct",
                           "gap ms p50 / p90 / p99", "tokens/s (median request)", "× llama-server",
                           "CPU ms/token: " + " / ".join(next(iter(summary.values()))["server_cpu_ms_per_token"]),
                           "client CPU ms/req", "failed"], rows)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=32, help="SmolLM2 rounds (one request per target each)")
    p.add_argument("--cached-rounds", type=int, default=100,
                   help="SmolLM2 rounds with the prompt already in the KV cache, 8 tokens (0 skips)")
    p.add_argument("--echo-rounds", type=int, default=300, help="echo-model rounds (0 skips)")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--n-ctx", type=int, default=4096)
    p.add_argument("--threads", type=int, default=2, help="n_threads = n_threads_batch on both stacks")
    p.add_argument("--max-foreign", type=float, default=0.1,
                   help="most CPU (cores) other work plus hypervisor steal may take during a round before it is repeated")
    p.add_argument("--attempts", type=int, default=3)
    p.add_argument("--quiet-timeout", type=float, default=1800,
                   help="longest wait (s) for a quiet machine before a round runs anyway")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    stop_on_signals()
    peers = require_peers_venv()
    from conch_api import Model
    from conch_engines import bundled, repository
    from conch_engines.embedded import bundled_model_resource
    from conch_engines.triton_server import TritonPorts, TritonServer
    from conch_gateway.backends.codecs import CODECS
    from conch_gateway.protocol.openai import CompletionRequest
    from conch_gateway.registry.base import served_model
    from conch_gateway.services.openai import generation_request

    started_at = time.time()
    workdir = RESULTS_DIR / "work" / f"streaming-{time.strftime('%Y%m%d-%H%M%S')}"
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    host, code = machine(), code_version()
    model = bundled.smollm2()
    gguf = str(model.gguf_path)
    digests = {"project": libllama_digest(Path(sys.executable)), "peers": libllama_digest(peers / "python")}
    if digests["project"] != digests["peers"]:
        say(f"WARNING: the two venvs have different llama.cpp builds: {digests}")

    repo = repository.write_repository(workdir / "repository", {
        **repository.llama_cpp_files(model.id, gguf, n_ctx=args.n_ctx, n_threads=args.threads),
        **repository.echo_files("echo")})
    triton = TritonServer(repo, workdir / "triton", TritonPorts.from_http(free_port_block(3)))
    children: list[Child] = []
    targets: list[Target] = []
    try:
        say(f"starting Triton: {model.display_name} (n_ctx={args.n_ctx}, n_threads={args.threads}) and echo")
        triton.start()
        smol, echo = bundled_model_resource(model, triton.url), echo_model_resource(triton.url)
        resources = [routed(smol, triton), routed(echo, triton)]
        gateway, gw_url = start_gateway(resources, workdir)
        children.append(gateway)
        gateway_grpc, gw_grpc_url = start_gateway(resources, workdir, "conch-grpc", {"CONCH_STREAM_TRANSPORT": "grpc"})
        children.append(gateway_grpc)

        ls_port = free_port_block(1)
        llama_argv = [str(peers / "python"), "-m", "llama_cpp.server", "--model", gguf,
                      "--host", "127.0.0.1", "--port", str(ls_port), "--n_ctx", str(args.n_ctx),
                      "--n_threads", str(args.threads), "--n_threads_batch", str(args.threads),
                      "--n_batch", "512", "--logits_all", "False", "--verbose", "False"]
        say("starting llama_cpp.server: " + " ".join(llama_argv[1:]))
        llama = Child("llama-server", llama_argv, workdir / "logs" / "llama-server.log").start()
        children.append(llama)
        llama.wait_http(f"http://127.0.0.1:{ls_port}/v1/models", timeout=120)
        groups = {"triton": triton.pid, "conch": gateway.pid, "conch-grpc": gateway_grpc.pid, "llama-server": llama.pid}

        def conch_body(model_id: str, prompt: str, max_tokens: int, stream: bool = True) -> dict:
            return {"model": model_id, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                    "stream": stream, **({"stream_options": {"include_usage": True}} if stream else {})}

        def direct_body(res: dict, body: dict) -> dict:
            """The Triton body the gateway sends for the completions request `body`."""
            served = served_model(Model.model_validate(res))
            request = CompletionRequest.model_validate(body)
            return CODECS[served.interface.value].request_body(
                generation_request(request, request.prompt, served, request.max_tokens), stream=True)

        # --- SmolLM2: every target, the ChatML-rendered prompts of generation.py
        rendered = [triton_body_and_prompt(smol, p, args.max_tokens)[1] for p in PROMPTS]
        prime_text = triton_body_and_prompt(smol, PRIME, 1)[1]
        stop = ["<|im_end|>"]

        def smollm2_targets(prompts: list[str], max_tokens: int, prime: bool) -> list[Target]:
            # with `prime`, each target primes through its own server (keeping its connection warm)
            gw = [conch_body("smollm2", r, max_tokens) for r in prompts]
            gw_prime = ("/v1/completions", conch_body("smollm2", prime_text, 1, stream=False))
            primes = {"direct": ("/v2/models/smollm2/generate",
                                 {**direct_body(smol, conch_body("smollm2", prime_text, 1)), "stream": False}),
                      "conch": gw_prime, "conch-grpc": gw_prime,
                      "llama-server": ("/v1/completions", llama_server_body(prime_text, 1, stop))}
            primes = primes if prime else {}
            return [
                Target("direct", triton.url, "/v2/models/smollm2/generate_stream",
                       [direct_body(smol, b) for b in gw], primes.get("direct")),
                Target("conch", gw_url, "/v1/completions", gw, primes.get("conch")),
                Target("conch-grpc", gw_grpc_url, "/v1/completions", gw, primes.get("conch-grpc")),
                Target("llama-server", f"http://127.0.0.1:{ls_port}", "/v1/completions",
                       [{**llama_server_body(r, max_tokens, stop), "stream": True} for r in prompts],
                       primes.get("llama-server")),
            ]

        smol_targets = smollm2_targets(rendered, args.max_tokens, prime=True)
        targets += smol_targets
        say("warm-up: one request per target")
        for t in smol_targets:
            t.prime_cache()
            t.stream(0)
        say(f"SmolLM2: {args.rounds} rounds × {len(smol_targets)} targets, {args.max_tokens} tokens each")
        smol_samples = run_rounds(smol_targets, args.rounds, len(PROMPTS), groups, args, "smollm2")

        # --- SmolLM2, its prompt cached: TTFT is one decoding step plus the serving stack
        cached_samples = []
        if args.cached_rounds:
            cached_targets = smollm2_targets(rendered[:1], 8, prime=False)
            targets += cached_targets
            for t in cached_targets:
                t.stream(0)
            say(f"SmolLM2, cached prompt: {args.cached_rounds} rounds × {len(cached_targets)} targets, 8 tokens each")
            cached_samples = run_rounds(cached_targets, args.cached_rounds, 1, groups, args, "smollm2-cached",
                                        quiet_every=5)

        # --- echo: the gateway's own cost on the way to the first token
        echo_samples = []
        if args.echo_rounds:
            eb = conch_body("echo", ECHO_PROMPT, 64)
            echo_targets = [Target("direct", triton.url, "/v2/models/echo/generate_stream", [direct_body(echo, eb)]),
                            GrpcTarget("direct-grpc", f"127.0.0.1:{triton.ports.grpc}", "echo", [direct_body(echo, eb)]),
                            Target("conch", gw_url, "/v1/completions", [eb]),
                            Target("conch-grpc", gw_grpc_url, "/v1/completions", [eb])]
            targets += echo_targets
            for t in echo_targets:
                for _ in range(20):
                    t.stream(0)
            say(f"echo: {args.echo_rounds} rounds × {len(echo_targets)} targets")
            echo_samples = run_rounds(echo_targets, args.echo_rounds, 1, groups, args, "echo", quiet_every=25)

        smol_summary = summarize(smol_samples, [t.name for t in smol_targets])
        ok = [s for s in smol_samples if "error" not in s]
        ref = {s["round"]: s["text"] for s in ok if s["target"] == "llama-server"}
        same_text = {n: statistics.mean(s["text"].strip() == ref[s["round"]].strip() for s in ok
                                        if s["target"] == n and s["round"] in ref) for n in smol_summary}
        cached_summary = summarize(cached_samples, [t.name for t in cached_targets]) if cached_samples else {}
        echo_summary = summarize(echo_samples, [t.name for t in echo_targets]) if echo_samples else {}
        data = {
            "benchmark": "streaming",
            "command": "python bench/streaming.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started_at)),
            "wall_seconds": round(time.time() - started_at, 1),
            "machine": host, "code": code, "settings": vars(args), "libllama_sha256": digests,
            "versions": {"project": versions("llama_cpp_python", "nvidia-pytriton", "fastapi", "uvicorn", "grpcio",
                                             "sse-starlette"),
                         "peers": versions("llama_cpp_python", "fastapi", "uvicorn", "sse-starlette",
                                           python=peers / "python")},
            "llama_server_argv": llama_argv[1:],
            "bodies": {t.name: json.loads(t.bodies[0]) for t in smol_targets},
            "same_text_as_llama_server": same_text,
            "summary": {"smollm2": smol_summary, "smollm2_cached": cached_summary, "echo": echo_summary},
            "samples": {"smollm2": smol_samples, "smollm2_cached": cached_samples, "echo": echo_samples},
        }
        path = write_results("streaming", data)
        print(f"## SmolLM2 Q4_1, {args.max_tokens} tokens, greedy, {args.rounds} rounds\n")
        print(table(smol_summary))
        print("\nsame text as llama-server: " + ", ".join(f"{n} {v:.0%}" for n, v in same_text.items()))
        if cached_summary:
            print(f"\n## SmolLM2, prompt in the KV cache, 8 tokens, {args.cached_rounds} rounds\n")
            print(table(cached_summary))
        if echo_summary:
            print(f"\n## echo model, {args.echo_rounds} rounds\n")
            print(table(echo_summary))
        print(f"\nresults: {path}")
        return 0
    finally:
        for t in targets:
            t.close()
        for child in reversed(children):
            child.stop()
        triton.stop()


if __name__ == "__main__":
    sys.exit(main())
