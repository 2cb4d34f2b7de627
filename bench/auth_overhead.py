"""What authentication and quotas cost: the same Triton (echo model) reached directly, through the
Conch gateway without and with auth + quotas in Redis, and through LiteLLM's proxy with its key and
limits in Redis — in one run, interleaved.

    .venv/bin/python bench/auth_overhead.py          # after `bash bench/setup.sh` and `make system-packages`

Targets (the request bodies and the measuring loop are bench/overhead.py's):
- direct: POST Triton /v2/models/echo/generate with the body the gateway sends;
- conch-open: `python -m conch_gateway`, no auth (loopback default), no quotas;
- conch-auth-redis: the same gateway with CONCH_AUTH=on, an API key (sent as Authorization: Bearer)
  whose quota sets requests/min, tokens/min and max parallel — so every request runs the admission
  script in a real redis-server and settles tokens and its lease after the answer. The limits are
  high enough never to refuse: the benchmark measures the bookkeeping, not 429s;
- litellm-auth-redis: LiteLLM's proxy with a master key (sent as Bearer) and per-deployment rpm/tpm
  limits tracked in the same Redis (usage-based routing). LiteLLM's *virtual* keys need its Postgres
  database (Prisma downloads its engine at run time), which this offline machine cannot run; the master
  key plus Redis-tracked limits is the closest configuration it allows here.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import common  # noqa: E402
import overhead  # noqa: E402
from common import RESULTS_DIR, Child, free_port_block, say, stop_on_signals, wrk_available, write_results  # noqa: E402
from overhead import Target  # noqa: E402

MASTER_KEY = "sk-bench-master-key-0123456789"
_PLAIN_LUA = common._WRK_LUA


def bearer_for(target: Target):
    """wrk sends the target's credential (bench/common.py's wrk script takes no headers)."""
    return with_bearer(getattr(target, "credential", None))


@contextlib.contextmanager
def with_bearer(key: str | None):
    """wrk sends `Authorization: Bearer <key>` meanwhile (none for None)."""
    if key:
        common._WRK_LUA = _PLAIN_LUA.replace('wrk.headers["Content-Type"] = "application/json"',
                                             'wrk.headers["Content-Type"] = "application/json"\n'
                                             f'wrk.headers["Authorization"] = "Bearer {key}"')
    try:
        yield
    finally:
        common._WRK_LUA = _PLAIN_LUA


def start_redis(workdir: Path):
    from support.redis_server import RedisServer

    return RedisServer(workdir / "redis").start()


def start_conch(name: str, models_file: Path, logs: Path, env: dict[str, str]) -> tuple[Child, str]:
    port = free_port_block(1)
    child = Child(name, [sys.executable, "-m", "conch_gateway"], logs / f"{name}.log",
                  env={"PORT": str(port), "CONCH_HOST": "127.0.0.1", "CONCH_MODEL_SOURCE": "local",
                       "CONCH_LOCAL_MODELS_FILE": str(models_file), "CONCH_LOG_LEVEL": "warning", **env}).start()
    child.wait_http(f"http://127.0.0.1:{port}/health", timeout=60, accept=(200, 503))
    return child, f"http://127.0.0.1:{port}"


def keys_file(workdir: Path) -> tuple[str, Path]:
    from conch_gateway.auth import keys

    new = keys.generate()
    path = workdir / "keys.yaml"
    path.write_text(yaml.safe_dump({"apiKeys": [{
        "name": "bench", "id": new.id, "sha256": new.sha256, "models": ["echo"],
        "requestsPerMinute": 1_000_000_000, "tokensPerMinute": 1_000_000_000_000, "maxParallel": 10_000}]}))
    return new.key, path


def litellm_config(triton_url: str, redis_port: int) -> dict:
    config = overhead.litellm_config(triton_url)
    config["model_list"][0]["litellm_params"].update(rpm=1_000_000_000, tpm=1_000_000_000_000)
    config["general_settings"].pop("dangerously_permit_weak_or_unset_master_key", None)
    config["general_settings"]["master_key"] = MASTER_KEY
    config["router_settings"] = {"routing_strategy": "usage-based-routing-v2", "redis_host": "127.0.0.1",
                                 "redis_port": redis_port}
    return config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM peer")
    args, rest = parser.parse_known_args(argv)
    settings = overhead.parse_args(rest)
    stop_on_signals()
    wrk_available()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = RESULTS_DIR / "work" / f"auth-overhead-{stamp}"
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started_at = time.time()
    triton = overhead.start_triton(workdir)
    redis = start_redis(workdir)
    children: list[Child] = []
    try:
        resource = overhead.echo_model_resource(triton.url)
        models_file = workdir / "models.yaml"
        models_file.write_text(yaml.safe_dump(resource, sort_keys=False))
        key, keys_path = keys_file(workdir)
        targets = [Target("direct", "direct", 0, f"{triton.url}/v2/models/echo/generate", overhead.direct_body(resource))]
        for name, env, credential in (
                ("conch-open", {}, None),
                ("conch-auth-redis", {"CONCH_AUTH": "on", "CONCH_AUTH_KEYS_FILE": str(keys_path),
                                      "CONCH_REDIS_URL": redis.url}, key)):
            say(f"starting {name}")
            child, url = start_conch(name, models_file, logs, env)
            children.append(child)
            target = Target(name, "conch", 1, f"{url}/v1/generate", overhead.gateway_request(), child)
            target.credential = credential  # type: ignore[attr-defined]
            targets.append(target)
        if not args.no_litellm:
            config = workdir / "litellm.yaml"
            config.write_text(yaml.safe_dump(litellm_config(triton.url, redis.port), sort_keys=False))
            say("starting LiteLLM (master key, limits in Redis)")
            child, url = overhead.start_litellm(1, config, logs)
            children.append(child)
            target = Target("litellm-auth-redis", "litellm", 1, f"{url}/v1/chat/completions",
                            overhead.litellm_request(), child)
            target.credential = MASTER_KEY  # type: ignore[attr-defined]
            targets.append(target)

        for t in targets:
            with bearer_for(t):
                t.expected_text = _check(t)
        reference = targets[0].expected_text.strip()
        for t in targets[1:]:
            if t.expected_text.strip() != reference:
                raise RuntimeError(f"{t.name} answers {t.expected_text!r}, direct answers {reference!r}")
        say(f"all targets answer the same {len(reference.split())} words")

        groups = {"triton": triton.pid, **{t.name: t.child.pid for t in targets if t.child}}
        for r in range(settings.rounds):
            for t in targets:
                say(f"round {r + 1}/{settings.rounds}: {t.name}")
                for other in targets:
                    if other.child is not None and other is not t:
                        other.child.pause()
                if t.child is not None:
                    t.child.resume()
                    with bearer_for(t):
                        _wait_answering(t)
                with bearer_for(t):
                    t.rounds.append(overhead.measure(t, settings, workdir / "wrk", groups))
        for t in targets:
            if t.child is not None:
                t.child.resume()
        summary = overhead.summarize(targets)
        data = {"benchmark": "auth_overhead", "command": "python bench/auth_overhead.py " + " ".join(sys.argv[1:]),
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started_at)),
                "wall_seconds": round(time.time() - started_at, 1), "machine": common.machine(),
                "code": common.code_version(), "settings": vars(settings),
                "rounds": {t.name: t.rounds for t in targets}, "summary": summary}
        path = write_results("auth-overhead", data)
        print(overhead.table(summary))
        print()
        for line in overhead.targets_verdict(summary):
            print(f"- {line}")
        print(f"\nresults: {path}")
        return 0
    finally:
        for child in reversed(children):
            child.stop()
        redis.stop()
        triton.stop()


def _check(target: Target) -> str:
    import json
    import urllib.request

    request = urllib.request.Request(target.url, data=json.dumps(target.body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {target.credential}"}
                                                 if getattr(target, "credential", None) else {})})
    with urllib.request.urlopen(request, timeout=60) as response:
        return overhead.answer_text(target.kind, json.loads(response.read()))


def _wait_answering(target: Target, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _check(target)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
