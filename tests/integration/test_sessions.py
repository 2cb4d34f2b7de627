"""Seed 002's chat service (POST /chat, POST /reset, GET /status) through the real gateway, the real
Triton and a real `redis-server`: the seed's curl examples as written, history capped at 20 turns
and trimmed to the model's context, one message at a time per session across three replicas, a
restart keeping the session, expiry, sessions private to their key, streaming, errors."""

from __future__ import annotations

import threading
import time
from typing import Iterator

import httpx
import orjson
import pytest
import yaml

from support import model_resource
from support.auth import bearer, key_entry, write_keys
from support.redis_server import RedisServer
from support.replicas import GatewayProcesses
from support.seed002 import SEED_CHAT, SEED_RESET, SEED_STATUS, curl
from support.stack import make_gateway, repository_models

from conch_api import Model

pytestmark = pytest.mark.triton


def models(triton) -> list[Model]:
    """The test repository's models, plus `tiny`: the echo model declared with a 128-token context."""
    tiny = Model.model_validate(model_resource("tiny", triton.url, "echo", engine={"maxSeqLen": 128,
                                                                                   "maxInputLen": 64}))
    return repository_models(triton.url) + [tiny]


@pytest.fixture
def redis(tmp_path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def chat(url: str, message: str, session: str | None = None, headers: dict | None = None, **body) -> httpx.Response:
    headers = {**(headers or {}), **({"X-Session-Id": session} if session else {})}
    return httpx.post(f"{url}/chat", json={"message": message, **body}, headers=headers, timeout=120)


def status(url: str, session: str | None = None, headers: dict | None = None) -> dict:
    headers = {**(headers or {}), **({"X-Session-Id": session} if session else {})}
    answer = httpx.get(f"{url}/status", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_seed_002_curl_examples_as_written(triton, redis):
    with make_gateway(models(triton), default_model="smollm2", redis_url=redis.url) as server:
        answer = curl(SEED_CHAT, server.url)
        assert set(answer) == {"message", "response", "status"}
        assert answer["message"] == "你好！" and answer["status"] == "success"
        assert isinstance(answer["response"], str) and answer["response"].strip()
        assert "<|im_end|>" not in answer["response"] and "<|im_start|>" not in answer["response"]
        curl(SEED_CHAT, server.url)
        state = curl(SEED_STATUS, server.url)
        assert set(state) == {"model_name", "device", "conversation_length", "memory_allocated"}
        assert state["conversation_length"] == 4  # two questions, two answers, as the seed's example shows
        assert state["model_name"] == "SmolLM2-135M-Instruct-Q4_1" and isinstance(state["memory_allocated"], int)
        assert curl(SEED_RESET, server.url)["status"] == "success"
        assert curl(SEED_STATUS, server.url)["conversation_length"] == 0


def test_history_reaches_the_model_and_keeps_20_turns(triton, redis):
    with make_gateway(models(triton), default_model="echo", redis_url=redis.url) as server:
        # The echo model answers with the prompt it was sent: the earlier turn is in it, templated.
        assert chat(server.url, "alpha", "remember").status_code == 200
        second = chat(server.url, "beta", "remember").json()["response"]
        assert second.startswith("<|im_start|>user\nalpha<|im_end|>\n<|im_start|>assistant\n")
        assert second.endswith("<|im_start|>user\nbeta<|im_end|>\n<|im_start|>assistant\n")
        # The fault model answers "ok"; 22 turns leave the newest 20.
        for i in range(22):
            assert chat(server.url, f"turn{i}", "cap", model="fault").status_code == 200
        assert status(server.url, "cap")["conversation_length"] == 40
        # The session's model can change; the prompt then holds turns 3..21 and the new question (20).
        prompt = chat(server.url, "last", "cap", model="echo").json()["response"]
        assert prompt.startswith("<|im_start|>user\nturn3<|im_end|>\n<|im_start|>assistant\nok<|im_end|>")
        assert "turn2<" not in prompt and prompt.count("<|im_start|>user") == 20


def test_history_is_trimmed_to_the_models_context(triton):
    # tiny: 128 tokens, 8 of them for the answer. A question costs 24 (estimated), an 8-word echo 16:
    # two earlier turns and the question fit (104), three (144) do not, so the oldest turns go.
    with make_gateway(models(triton), default_model="tiny") as server:
        answers = [chat(server.url, f"t{i} " + "a " * 28, max_tokens=8).json()["response"] for i in range(5)]
        assert answers[2].startswith("<|im_start|>user\nt0 ")  # turns 0, 1 and the question: 104 tokens
        assert answers[3].startswith("<|im_start|>user\nt1 ")
        assert answers[4].startswith("<|im_start|>user\nt2 ")
        assert status(server.url)["conversation_length"] == 6
        # An answer as long as the whole context leaves no room for any conversation.
        refused = chat(server.url, "x", max_tokens=128)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "CONTEXT_LENGTH_EXCEEDED"


def test_sessions_expire(triton, redis):
    with make_gateway(models(triton), default_model="fault", redis_url=redis.url, session_ttl_s=1) as server:
        assert chat(server.url, "hello", "short").status_code == 200
        assert status(server.url, "short")["conversation_length"] == 2
        ttl = int(redis.command("PTTL", "conch:session:anonymous:short").split(b"\r\n")[0].lstrip(b":"))
        assert 0 < ttl <= 1000
        time.sleep(1.3)
        assert status(server.url, "short")["conversation_length"] == 0
    with make_gateway(models(triton), default_model="fault", session_ttl_s=1) as server:  # in memory
        assert chat(server.url, "hello", "short").status_code == 200
        assert status(server.url, "short")["conversation_length"] == 2
        time.sleep(1.3)
        assert status(server.url, "short")["conversation_length"] == 0


def test_one_key_cannot_read_or_reset_anothers_session(triton, tmp_path, redis):
    issued, entries = {}, []
    for name in ("alice", "bob"):
        issued[name], entry = key_entry(name)
        entries.append(entry)
    keys_file = write_keys(tmp_path / "keys.yaml", entries)
    with make_gateway(models(triton), default_model="echo", auth="on", auth_keys_file=keys_file,
                      redis_url=redis.url) as server:
        alice, bob = bearer(issued["alice"]), bearer(issued["bob"])
        assert chat(server.url, "secret plans", "shared", alice).status_code == 200
        assert status(server.url, "shared", bob)["conversation_length"] == 0
        assert "secret" not in chat(server.url, "what did alice say", "shared", bob).json()["response"]
        assert httpx.post(f"{server.url}/reset", headers={**bob, "X-Session-Id": "shared"}).status_code == 200
        assert status(server.url, "shared", alice)["conversation_length"] == 2
        assert b"conch:session:key:alice:shared" in redis.command("KEYS", "conch:session:*")
        nobody = httpx.get(f"{server.url}/status")
        assert nobody.status_code == 401 and "error" in nobody.json()


def test_streaming_chat_keeps_the_turn(triton):
    with make_gateway(models(triton), default_model="echo") as server:
        with httpx.stream("POST", f"{server.url}/chat", json={"message": "one two three", "stream": True},
                          headers={"X-Session-Id": "s"}, timeout=60) as answer:
            assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
            events = [orjson.loads(line[len("data: "):]) for line in answer.iter_lines() if line.startswith("data: ")]
        assert len(events) > 2 and all(e["finished"] is False for e in events[:-1])
        last = events[-1]
        assert last["finished"] is True and last["status"] == "success" and last["message"] == "one two three"
        assert last["response"] == "".join(e["token"] for e in events)
        assert "one two three" in last["response"]
        assert status(server.url, "s")["conversation_length"] == 2
        # A stream that fails keeps no turn and ends with the error envelope.
        with httpx.stream("POST", f"{server.url}/chat", timeout=60, headers={"X-Session-Id": "s"},
                          json={"message": "FAIL_MIDSTREAM", "stream": True, "model": "fault"}) as failing:
            events = [orjson.loads(line[6:]) for line in failing.iter_lines() if line.startswith("data: ")]
        assert events[-1]["finished"] is True and "error" in events[-1]
        assert status(server.url, "s")["conversation_length"] == 2


def test_errors_in_the_one_envelope(triton, redis):
    with make_gateway(models(triton), default_model="echo", redis_url=redis.url) as server:
        for body, code, status_code in [({}, "INVALID_REQUEST", 422),
                                        ({"message": ""}, "INVALID_REQUEST", 422),
                                        ({"message": "hi", "temperature": 5}, "INVALID_REQUEST", 422),
                                        ({"message": "hi", "model": "nope"}, "MODEL_NOT_FOUND", 400)]:
            answer = httpx.post(f"{server.url}/chat", json=body)
            assert answer.status_code == status_code and answer.json()["error"]["code"] == code, answer.text
        bad_session = httpx.get(f"{server.url}/status", headers={"X-Session-Id": "no spaces please"})
        assert bad_session.status_code == 422 and bad_session.json()["error"]["code"] == "INVALID_REQUEST"
        redis.kill()
        down = chat(server.url, "hi", "x")
        assert down.status_code == 503 and down.json()["error"]["code"] == "SESSIONS_UNAVAILABLE"
        assert down.headers["retry-after"]


# Three replicas and a restart -----------------------------------------------------------------

def test_replicas_share_sessions_one_message_at_a_time_and_a_restart_keeps_them(triton, tmp_path, redis):
    models_file = tmp_path / "models.yaml"
    models_file.write_text(yaml.safe_dump_all([m.model_dump(mode="json", exclude_none=True) for m in models(triton)]))
    env = {"CONCH_REDIS_URL": redis.url, "CONCH_MODEL_SOURCE": "local", "CONCH_LOCAL_MODELS_FILE": str(models_file),
           "CONCH_DEFAULT_MODEL": "echo", "CONCH_LOG_LEVEL": "warning"}
    replicas = GatewayProcesses(3, env, tmp_path, ready_path="/status", ready_statuses=(200,))
    try:
        one, two, three = replicas.urls
        results: dict[str, httpx.Response] = {}

        def send(name: str, url: str, session: str) -> None:
            results[name] = chat(url, "SLEEP: 1", session, model="fault")

        started = time.monotonic()
        threads = [threading.Thread(target=send, args=("a", one, "busy")),
                   threading.Thread(target=send, args=("b", two, "busy"))]
        for thread in threads:
            thread.start()
            time.sleep(0.1)
        other = threading.Thread(target=send, args=("c", three, "other"))
        other.start()
        other.join()
        other_took = time.monotonic() - started
        for thread in threads:
            thread.join()
        busy_took = time.monotonic() - started
        assert all(r.status_code == 200 for r in results.values()), {k: r.text for k, r in results.items()}
        assert busy_took >= 2.0  # the two on one session ran one after the other, across replicas
        assert other_took < 2.0  # another session did not wait for them
        state = status(three, "busy")
        assert state["conversation_length"] == 4 and state["model_name"] == "fault"
    finally:
        replicas.stop()
    restarted = GatewayProcesses(1, env, tmp_path, ready_path="/status", ready_statuses=(200,))
    try:
        state = status(restarted.urls[0], "busy")
        assert state["conversation_length"] == 4 and state["model_name"] == "fault"  # the session's model too
        prompt = chat(restarted.urls[0], "and now?", "busy", model="echo").json()["response"]
        assert prompt.startswith("<|im_start|>user\nSLEEP: 1<|im_end|>")
    finally:
        restarted.stop()
