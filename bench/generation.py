"""Generation throughput: tokens/s through the whole Conch stack (gateway → Triton → llama.cpp)
against llama-cpp-python's own OpenAI-compatible server, on the same GGUF.

    .venv/bin/python bench/generation.py          # after `bash bench/setup.sh`

Same bundled SmolLM2-135M-Instruct Q4_1 GGUF, same llama-cpp-python build (the peers venv
installs the very wheel the project venv was built with; the script checks the libllama.so
checksums), same n_ctx, n_threads, n_threads_batch and n_batch, logits_all off on both, greedy
decoding, same max tokens, one request at a time, each prompt in turn on each stack (order
alternating so drift and the prefix KV cache treat both alike).

Three targets:
- conch:        POST gateway /v1/generate {"inputs": prompt, "parameters": {max_new_tokens, do_sample: false}}
- triton:       POST Triton /v2/models/smollm2/generate with exactly the body the gateway sends
                (shows what the gateway itself costs, and what Triton + the runtime cost)
- llama-server: POST llama_cpp.server /v1/completions with the very prompt text the gateway
                renders (ChatML), temperature 0, repeat_penalty 1.0, stop <|im_end|>

tokens/s = generated tokens / client-side wall time of the request (prompt processing
included, as a user sees it). Greedy decoding makes the texts of the three identical; the
script reports whether they are.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

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
    require_peers_venv,
    say,
    versions,
    stop_on_signals,
    write_results,
)
from procstat import ForeignMeter, wait_quiet  # noqa: E402

PRIME = "Hi"  # see "Priming" in main()

PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a refrigerator keeps food cold, step by step.",
    "Describe the water cycle to a class of ten year old students.",
    "What are the main differences between a cat and a dog as a pet? Give several examples.",
    "Write a letter to a friend describing your last summer holiday at the sea.",
    "Explain why exercise is good for your health, with practical advice for beginners.",
    "Describe a busy market in a small town on a Saturday morning.",
    "Give a detailed recipe for making pancakes, from the ingredients to serving them.",
]


class Client:
    """One keep-alive HTTP connection, one request at a time."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.path = parts.path
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)

    def post(self, body: dict) -> tuple[float, dict]:
        data = json.dumps(body).encode()
        for attempt in (1, 2):
            try:
                started = time.perf_counter()
                self.conn.request("POST", self.path, body=data, headers={"Content-Type": "application/json"})
                response = self.conn.getresponse()
                payload = response.read()
                elapsed = time.perf_counter() - started
                break
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                # the server closed the idle keep-alive connection (uvicorn: after 5 s): reconnect
                self.conn.close()
                if attempt == 2:
                    raise
                self.conn.connect()
        if response.status != 200:
            raise RuntimeError(f"POST {self.path}: HTTP {response.status}: {payload[:500]!r}")
        return elapsed, json.loads(payload)

    def close(self) -> None:
        self.conn.close()


def gateway_body(prompt: str, max_tokens: int) -> dict:
    return {"model_id": "smollm2", "inputs": prompt, "parameters": {"max_new_tokens": max_tokens, "do_sample": False}}


def triton_body_and_prompt(resource_: dict, prompt: str, max_tokens: int) -> tuple[dict, str]:
    """The body the gateway sends Triton for gateway_body(prompt), and the prompt text it renders."""
    from conch_api import Model
    from conch_gateway.backends.codecs import CODECS
    from conch_gateway.protocol.generate import GenerateRequest
    from conch_gateway.registry.base import served_model
    from conch_gateway.services.generate import render_prompt, to_generation_request

    model = served_model(Model.model_validate(resource_))
    request = GenerateRequest.model_validate(gateway_body(prompt, max_tokens))
    text = render_prompt(model, request.scenario, request.inputs)
    body = CODECS[model.interface.value].request_body(to_generation_request(request.parameters, text, model),
                                                      stream=False)
    return body, text


def llama_server_body(rendered: str, max_tokens: int, stop: list[str]) -> dict:
    return {"prompt": rendered, "max_tokens": max_tokens, "temperature": 0.0, "top_k": 1, "top_p": 1.0,
            "min_p": 0.0, "repeat_penalty": 1.0, "stop": stop, "stream": False}


def libllama_digest(python: Path) -> str:
    code = ("import llama_cpp, pathlib, hashlib; "
            "p = pathlib.Path(llama_cpp.__file__).parent / 'lib' / 'libllama.so'; "
            "print(hashlib.sha256(p.read_bytes()).hexdigest())")
    import subprocess

    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return out.stdout.strip() or f"error: {out.stderr.strip()[-200:]}"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3, help="passes over the prompts")
    p.add_argument("--n-ctx", type=int, default=4096, help="as `make up` (CONCH_N_CTX default)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="n_threads and n_threads_batch, both stacks")
    p.add_argument("--skip-triton-direct", action="store_true")
    p.add_argument("--max-foreign", type=float, default=0.1,
                   help="most CPU (cores, average) other users' work plus hypervisor steal may take during a "
                        "request before it is repeated")
    p.add_argument("--attempts", type=int, default=3, help="tries per request when the machine was busy")
    p.add_argument("--quiet-timeout", type=float, default=300, help="longest wait for a quiet machine (s)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    stop_on_signals()
    peers = require_peers_venv()
    from conch_engines import bundled, repository
    from conch_engines.triton_server import TritonPorts, TritonServer

    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = RESULTS_DIR / "work" / f"generation-{stamp}"
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started_at = time.time()
    host = machine()
    code = code_version()
    model = bundled.smollm2()
    gguf = str(model.gguf_path)
    digests = {"project": libllama_digest(Path(sys.executable)), "peers": libllama_digest(peers / "python")}
    if digests["project"] != digests["peers"]:
        say(f"WARNING: the two venvs have different llama.cpp builds: {digests}")

    repo = repository.write_repository(
        workdir / "repository",
        repository.llama_cpp_files(model.id, gguf, n_ctx=args.n_ctx, n_threads=args.threads))
    triton = TritonServer(repo, workdir / "triton", TritonPorts.from_http(free_port_block(3)))
    children: list[Child] = []
    try:
        say(f"starting Triton with {model.display_name} (n_ctx={args.n_ctx}, n_threads={args.threads})")
        triton.start()
        from conch_engines.embedded import bundled_model_resource

        resource_ = bundled_model_resource(model, triton.url)  # what `make up` serves
        models_file = workdir / "models.yaml"
        models_file.write_text(yaml.safe_dump(resource_, sort_keys=False))

        gw_port = free_port_block(1)
        gateway = Child("conch", [sys.executable, "-m", "conch_gateway"], logs / "conch.log",
                        env={"PORT": str(gw_port), "CONCH_HOST": "127.0.0.1", "CONCH_MODEL_SOURCE": "local",
                             "CONCH_LOCAL_MODELS_FILE": str(models_file), "CONCH_LOG_LEVEL": "warning"}).start()
        children.append(gateway)
        gateway.wait_http(f"http://127.0.0.1:{gw_port}/health", timeout=60)

        ls_port = free_port_block(1)
        # Llama() settings of Conch's runtime (conch_engines/runtimes/llama_cpp/triton_model.py):
        # n_ctx, n_threads = n_threads_batch, default n_batch (512), logits_all False.
        llama_argv = [str(peers / "python"), "-m", "llama_cpp.server", "--model", gguf,
                      "--host", "127.0.0.1", "--port", str(ls_port), "--n_ctx", str(args.n_ctx),
                      "--n_threads", str(args.threads), "--n_threads_batch", str(args.threads),
                      "--n_batch", "512", "--logits_all", "False", "--verbose", "False"]
        say("starting llama_cpp.server: " + " ".join(llama_argv[1:]))
        llama = Child("llama-server", llama_argv, logs / "llama-server.log").start()
        children.append(llama)
        llama.wait_http(f"http://127.0.0.1:{ls_port}/v1/models", timeout=120)

        requests = []
        for prompt in PROMPTS:
            tbody, rendered = triton_body_and_prompt(resource_, prompt, args.max_tokens)
            stop = list(tbody.get("stop_words", []))  # the gateway's stop words (<|im_end|>)
            requests.append({"prompt": prompt, "rendered": rendered,
                             "conch": gateway_body(prompt, args.max_tokens),
                             "triton": tbody,
                             "llama-server": llama_server_body(rendered, args.max_tokens, stop)})

        clients = {"conch": Client(f"http://127.0.0.1:{gw_port}/v1/generate"),
                   "llama-server": Client(f"http://127.0.0.1:{ls_port}/v1/completions")}
        if not args.skip_triton_direct:
            clients["triton"] = Client(f"{triton.url}/v2/models/{model.id}/generate")
        names = list(clients)

        def tokens_and_text(name: str, payload: dict) -> tuple[int, str]:
            if name == "conch":
                return payload["tokens"], payload["generated_text"]
            if name == "triton":
                text = payload["text_output"]
                return int(payload["num_output_tokens"]), text[0] if isinstance(text, list) else text
            return payload["usage"]["completion_tokens"], payload["choices"][0]["text"]

        # Priming: before every measured request the target's llama.cpp context last saw the
        # same short prompt, so the KV-cache prefix reuse of llama-cpp-python (`Llama.generate`
        # keeps the longest common prefix) is identical for all targets (conch and triton share
        # one model instance; without this the second of them would find its prompt cached).
        _, prime_rendered = triton_body_and_prompt(resource_, PRIME, 1)
        prime = {"conch": gateway_body(PRIME, 1), "triton": triton_body_and_prompt(resource_, PRIME, 1)[0],
                 "llama-server": llama_server_body(prime_rendered, 1, stop)}

        say("warm-up: one request per target")
        for name in names:
            clients[name].post(requests[0][name])

        groups = {"triton": triton.pid, "conch": gateway.pid, "llama-server": llama.pid}
        samples = []

        def measured(name: str, body: dict) -> tuple[float, dict, dict, list[float]]:
            tries = []
            for attempt in range(1, args.attempts + 1):
                clients[name].post(prime[name])
                wait_quiet(groups, max_foreign_cores=args.max_foreign, window=1.0, timeout=args.quiet_timeout,
                           say=say)
                meter = ForeignMeter(groups).start()
                elapsed, payload = clients[name].post(body)
                tries.append((elapsed, payload, meter.stop()))
                if tries[-1][2]["disturbance_cores"] <= args.max_foreign:
                    break
            elapsed, payload, m = min(tries, key=lambda t: t[2]["disturbance_cores"])
            return elapsed, payload, m, [t[2]["disturbance_cores"] for t in tries]

        for rep in range(args.repeats):
            for i, req in enumerate(requests):
                order = names if (rep + i) % 2 == 0 else list(reversed(names))
                for name in order:
                    elapsed, payload, m, foreign = measured(name, req[name])
                    tokens, text = tokens_and_text(name, payload)
                    samples.append({"rep": rep, "prompt": i, "target": name, "seconds": elapsed,
                                    "tokens": tokens, "tokens_per_s": tokens / elapsed, "text": text,
                                    "cpu_seconds": m["cpu_seconds"], "foreign_cores": m["disturbance_cores"],
                                    "steal_cores": m["steal_cores"],
                                    "foreign_cores_per_attempt": foreign})
                say(f"pass {rep + 1}/{args.repeats} prompt {i + 1}/{len(requests)}: " + ", ".join(
                    f"{s['target']} {s['tokens']} tok {s['tokens_per_s']:.1f}/s" for s in samples[-len(names):]))
        for c in clients.values():
            c.close()

        summary = {}
        for name in names:
            mine = [s for s in samples if s["target"] == name]
            tokens = sum(s["tokens"] for s in mine)
            seconds = sum(s["seconds"] for s in mine)
            per_pass = []
            for rep in range(args.repeats):
                r = [s for s in mine if s["rep"] == rep]
                per_pass.append(sum(s["tokens"] for s in r) / sum(s["seconds"] for s in r))
            summary[name] = {"tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": tokens / seconds,
                             "tokens_per_s_per_pass": per_pass,
                             "mean_request_s": seconds / len(mine),
                             "cpu_seconds": {k: round(sum(s["cpu_seconds"].get(k, 0) for s in mine), 2)
                                             for k in ("triton", "conch", "llama-server", "bench+wrk")},
                             "foreign_cores_max": max(s["foreign_cores"] for s in mine),
                             "retried_requests": sum(len(s["foreign_cores_per_attempt"]) > 1 for s in mine)}
        base = summary["llama-server"]
        for name, s in summary.items():
            s["ratio_vs_llama_server"] = s["tokens_per_s"] / base["tokens_per_s"]
            s["ratio_per_pass"] = [a / b for a, b in zip(s["tokens_per_s_per_pass"], base["tokens_per_s_per_pass"])]

        # greedy: the same text everywhere?
        same = {}
        for name in names:
            if name == "llama-server":
                continue
            pairs = [(a["text"], b["text"]) for a in samples for b in samples
                     if a["target"] == name and b["target"] == "llama-server"
                     and a["rep"] == b["rep"] and a["prompt"] == b["prompt"]]
            same[name] = sum(x.strip() == y.strip() for x, y in pairs) / len(pairs)
        token_counts = {n: sorted({(s["prompt"], s["tokens"]) for s in samples if s["target"] == n}) for n in names}

        rows = []
        for name in names:
            s = summary[name]
            spread = s["tokens_per_s_per_pass"]
            rows.append([name, f"{s['tokens_per_s']:.1f}", f"{min(spread):.1f}–{max(spread):.1f}",
                         f"{s['ratio_vs_llama_server']:.3f}",
                         f"{min(s['ratio_per_pass']):.3f}–{max(s['ratio_per_pass']):.3f}",
                         s["tokens"], f"{s['mean_request_s'] * 1000:.0f}",
                         "—" if name == "llama-server" else f"{same[name]:.0%}",
                         f"{s['foreign_cores_max']:.2f}"])
        table = markdown_table(["target", "tokens/s", "per pass", "× llama-server", "per pass ×",
                                "tokens", "mean ms/request", "same text as llama-server",
                                "other load (cores, max)"], rows)

        data = {
            "benchmark": "generation",
            "command": "python bench/generation.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started_at)),
            "wall_seconds": round(time.time() - started_at, 1),
            "machine": host,
            "code": code,
            "model": {"id": model.id, "gguf": gguf, "sha256_prefix": _sha256_prefix(gguf)},
            "libllama_sha256": digests,
            "versions": {"project": versions("llama_cpp_python", "nvidia-pytriton", "fastapi", "uvicorn"),
                         "peers": versions("llama_cpp_python", "fastapi", "uvicorn", "sse-starlette",
                                           python=BENCH_DIR / ".venv-peers/bin/python")},
            "settings": vars(args),
            "llama_server_argv": llama_argv[1:],
            "requests": requests,
            "token_counts": token_counts,
            "same_text_share": same,
            "summary": summary,
            "samples": samples,
        }
        path = write_results("generation", data)
        print(table)
        print(f"\nresults: {path}")
        return 0
    finally:
        for child in reversed(children):
            child.stop()
        triton.stop()


def _sha256_prefix(path: str, size: int = 1 << 20) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read(size)).hexdigest()


if __name__ == "__main__":
    sys.exit(main())
