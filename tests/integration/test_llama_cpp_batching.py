"""Continuous batching in the llama-cpp runtime, inside the real Triton with the bundled SmolLM2:
streams progress together, each request keeps its own sampling, a long prompt is prefilled in
chunks without stopping the running streams, answers do not depend on what ran before, a
cancelled request frees its slot for a waiting one, the waiting queue is bounded and visible in
Triton's metrics, and a dead worker fails requests at once instead of leaving them hanging."""

from __future__ import annotations

import re
import shutil
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import orjson
import pytest

from conch_engines import bundled, repository
from conch_engines.triton_server import TritonPorts, TritonServer
from support import REPO_ROOT, free_port_block
from support.k8s import wait_until

pytestmark = pytest.mark.triton

DYING_MODEL = REPO_ROOT / "tests" / "integration" / "triton_models" / "llama_cpp_dying"
QUESTIONS = ["What is the capital of France?", "List three colors.", "Write a haiku about the sea.",
             "Why is the sky blue?", "Tell me a joke.", "Who wrote Hamlet?", "Describe a cat.",
             "How do airplanes fly?"]


def chat(question: str) -> str:
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


class Stream:
    """A `generate_stream` request on a thread; every event is kept with its arrival time."""

    def __init__(self, base_url: str, model: str, **body):
        self.events: list[tuple[float, dict]] = []
        self.error: str | None = None
        self.sent_at = time.monotonic()
        body = {"stream": True, "exclude_input_in_output": True, "return_num_output_tokens": True, **body}
        self._thread = threading.Thread(target=self._run, args=(f"{base_url}/v2/models/{model}/generate_stream", body))
        self._thread.start()

    def _run(self, url: str, body: dict) -> None:
        with httpx.stream("POST", url, json=body, timeout=120) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    event = orjson.loads(line[6:])
                    if "error" in event:
                        self.error = event["error"]
                    else:
                        self.events.append((time.monotonic(), event))
            if response.status_code != 200 and self.error is None:
                self.error = response.read().decode()

    def join(self, timeout: float = 120) -> "Stream":
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the stream did not end"
        return self

    def wait_started(self, timeout: float = 60) -> "Stream":
        wait_until(lambda: self.events or self.error or not self._thread.is_alive(), timeout, message="first token")
        return self

    @property
    def text(self) -> str:
        return "".join(event["text_output"] for _, event in self.events)

    @property
    def tokens(self) -> int:
        return sum(event["num_output_tokens"] for _, event in self.events)

    @property
    def times(self) -> list[float]:
        return [t for t, _ in self.events]


class GrpcStream:
    """A streaming request over gRPC, which (unlike HTTP) the client can cancel inside Triton."""

    def __init__(self, address: str, model: str, prompt: str, max_tokens: int):
        import tritonclient.grpc as grpcclient

        self.events: list[str] = []
        self.errors: list[str] = []
        self._client = grpcclient.InferenceServerClient(address)
        self._client.start_stream(callback=self._on_response)
        inputs = []
        for name, value, dtype in (("text_input", prompt.encode(), np.object_), ("max_tokens", max_tokens, np.int32),
                                   ("min_tokens", max_tokens, np.int32), ("top_k", 1, np.int32),
                                   ("stream", True, bool)):
            tensor = grpcclient.InferInput(name, [1, 1], {np.object_: "BYTES", np.int32: "INT32", bool: "BOOL"}[dtype])
            tensor.set_data_from_numpy(np.array([[value]], dtype=dtype))
            inputs.append(tensor)
        self._client.async_stream_infer(model, inputs)

    def _on_response(self, result, error) -> None:
        if error is not None:
            self.errors.append(str(error))
        elif result.as_numpy("text_output") is not None:
            self.events.append(result.as_numpy("text_output").reshape(-1)[0].decode())

    def cancel(self) -> None:
        self._client.stop_stream(cancel_requests=True)
        self._client.close()


def generate(base_url: str, model: str, **body) -> httpx.Response:
    return httpx.post(f"{base_url}/v2/models/{model}/generate",
                      json={"exclude_input_in_output": True, "return_num_output_tokens": True, **body}, timeout=120)


def answer(base_url: str, model: str, **body) -> str:
    response = generate(base_url, model, **body)
    assert response.status_code == 200, response.text
    return response.json()["text_output"]


def metric(server: TritonServer, name: str, model: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{server.ports.metrics}/metrics", timeout=10).text
    found = re.search(rf'^{name}{{[^}}]*model="{model}"[^}}]*}} (\S+)$', text, re.MULTILINE)
    assert found, f"{name} for {model} is not on Triton's metrics endpoint"
    return float(found.group(1))


# -- the test Triton's SmolLM2 (8 slots, the default) -------------------------------------------

def test_concurrent_streams_progress_together(triton):
    streams = [Stream(triton.url, "smollm2", text_input=chat(q), max_tokens=32, min_tokens=32, top_k=1)
               for q in QUESTIONS[:4]]
    for stream in streams:
        stream.join()
        assert stream.error is None and stream.tokens == 32
    for stream in streams:
        first, last = stream.times[0], stream.times[-1]
        for other in streams:
            if other is not stream:  # every other stream got tokens while this one was generating
                assert any(first < t < last for t in other.times)


def test_greedy_and_sampled_requests_in_one_batch_each_keep_their_settings(triton):
    greedy = dict(text_input=chat(QUESTIONS[2]), max_tokens=40, min_tokens=40, top_k=1)
    sampled = dict(text_input=chat(QUESTIONS[2]), max_tokens=24, min_tokens=24, temperature=1.0, top_p=0.95)
    greedy_alone = answer(triton.url, "smollm2", **greedy)
    sampled_alone = answer(triton.url, "smollm2", seed=11, **sampled)

    running = Stream(triton.url, "smollm2", **greedy).wait_started()
    side_by_side = [Stream(triton.url, "smollm2", seed=seed, **sampled) for seed in (11, 12)]
    for stream in (running, *side_by_side):
        stream.join()
        assert stream.error is None
    assert running.times[-1] > min(s.times[0] for s in side_by_side)  # they did share the batch
    assert running.text == greedy_alone
    assert side_by_side[0].text == sampled_alone  # same seed, same draws, whoever shares the batch
    assert side_by_side[1].text != side_by_side[0].text


def test_a_long_prompt_is_prefilled_in_chunks_while_a_stream_keeps_going(triton):
    running = Stream(triton.url, "smollm2", text_input=chat(QUESTIONS[3]), max_tokens=100, min_tokens=100,
                     top_k=1).wait_started()
    long_prompt = chat("Summarize this text. " + "The history of Rome spans many centuries of wars and laws. " * 45)
    long = Stream(triton.url, "smollm2", text_input=long_prompt, max_tokens=2, top_k=1).wait_started()
    running.join()
    long.join()
    assert long.error is None and running.error is None
    during_prefill = [t for t in running.times if long.sent_at < t < long.times[0]]
    # ~560 prompt tokens are 18 chunks of 32, each a step in which the running stream decodes too
    assert len(during_prefill) >= 10, f"the stream got {len(during_prefill)} tokens during the long prefill"


def test_greedy_and_seeded_answers_do_not_depend_on_what_ran_before(triton):
    request = dict(text_input=chat("List three colors."), max_tokens=24, top_k=1)
    seeded = dict(text_input=chat("Tell me a story."), max_tokens=24, temperature=1.2, seed=7)
    first, first_seeded = answer(triton.url, "smollm2", **request), answer(triton.url, "smollm2", **seeded)
    # what ran before: a prompt sharing the request's prefix (what a prompt cache would reuse),
    # then a batch of concurrent requests, greedy and sampled
    answer(triton.url, "smollm2", text_input=chat("List three colors.") + "1. Red", max_tokens=8, top_k=1)
    others = [Stream(triton.url, "smollm2", text_input=chat(q), max_tokens=20, temperature=0.9) for q in QUESTIONS]
    for stream in others:
        stream.join()
    for _ in range(2):
        assert answer(triton.url, "smollm2", **request) == first
        assert answer(triton.url, "smollm2", **seeded) == first_seeded


def test_an_empty_prompt_is_refused_and_the_worker_lives_on(triton):
    # an empty prompt once reached the batch with no token to decode and killed the worker
    refused = generate(triton.url, "smollm2", text_input="", max_tokens=4)
    assert refused.status_code == 400 and "prompt must be at least one token" in refused.json()["error"]
    assert answer(triton.url, "smollm2", text_input=chat("Say hi."), max_tokens=4, top_k=1)
    assert metric(triton, "conch_llama_cpp_worker_up", "smollm2") == 1


def test_slot_and_queue_gauges_are_on_the_metrics_endpoint(triton):
    assert metric(triton, "conch_llama_cpp_sequence_slots", "smollm2") == 8
    assert metric(triton, "conch_llama_cpp_worker_up", "smollm2") == 1
    assert metric(triton, "conch_llama_cpp_waiting_requests", "smollm2") == 0


# -- a Triton of its own: 2 slots and 1 waiting request at most, and a model whose worker dies ----

@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Iterator[TritonServer]:
    workdir = tmp_path_factory.mktemp("triton-batching")
    gguf = str(bundled.smollm2().gguf_path)
    root = repository.write_repository(workdir / "repository", {
        **repository.llama_cpp_files("batched", gguf, n_ctx=2048, slots=2, max_queue=1),
        "dying/config.pbtxt": repository.render_config(repository.llama_cpp_config("dying", gguf, n_ctx=1024, slots=2)),
    })
    (root / "dying" / "1").mkdir(parents=True)
    shutil.copy(DYING_MODEL / "1" / "model.py", root / "dying" / "1" / "model.py")
    server = TritonServer(root, workdir, TritonPorts.from_http(free_port_block()))
    server.start()
    yield server
    server.stop()


def grpc_address(server: TritonServer) -> str:
    return f"127.0.0.1:{server.ports.grpc}"


def test_config_carries_the_slots_and_the_queue_limit(small):
    parameters = httpx.get(f"{small.url}/v2/models/batched/config").json()["parameters"]
    assert parameters["slots"]["string_value"] == "2" and parameters["max_queue"]["string_value"] == "1"
    assert parameters["prefix_cache"]["string_value"] == "true"  # the default
    assert metric(small, "conch_llama_cpp_sequence_slots", "batched") == 2


def test_cancelling_a_stream_gives_its_slot_to_a_waiting_request(small):
    holders = [GrpcStream(grpc_address(small), "batched", chat(q), max_tokens=1500) for q in QUESTIONS[:2]]
    try:
        wait_until(lambda: all(h.events for h in holders), 60, message="both slots streaming")
        waiting = Stream(small.url, "batched", text_input=chat(QUESTIONS[2]), max_tokens=20, min_tokens=20, top_k=1)
        wait_until(lambda: metric(small, "conch_llama_cpp_waiting_requests", "batched") == 1, 30,
                   message="the third request waiting for a slot")
        assert metric(small, "conch_llama_cpp_running_sequences", "batched") == 2
        time.sleep(0.5)
        assert waiting.events == []  # no slot: it has not started
        holders[0].cancel()
        waiting.join()
        assert waiting.error is None and waiting.tokens == 20
        still = len(holders[1].events)
        wait_until(lambda: len(holders[1].events) > still, 30, message="the other stream going on")
        assert metric(small, "conch_llama_cpp_waiting_requests", "batched") == 0
    finally:
        for holder in holders:
            holder.cancel()
    wait_until(lambda: metric(small, "conch_llama_cpp_running_sequences", "batched") == 0, 30,
               message="cancelled streams leave their slots")


def test_a_full_queue_refuses_at_once_and_short_requests_take_their_lane(small):
    holders = [GrpcStream(grpc_address(small), "batched", chat(q), max_tokens=1500) for q in QUESTIONS[:2]]
    try:
        wait_until(lambda: all(h.events for h in holders), 60, message="both slots streaming")
        waiting = Stream(small.url, "batched", text_input=chat(QUESTIONS[2]), max_tokens=20, top_k=1)
        wait_until(lambda: metric(small, "conch_llama_cpp_waiting_requests", "batched") == 1, 30,
                   message="one request waiting")
        rejected = metric(small, "conch_llama_cpp_rejected_requests_total", "batched")
        refused = generate(small.url, "batched", text_input=chat(QUESTIONS[3]), max_tokens=50)
        assert refused.status_code != 200 and refused.json()["error"].startswith("queue full:")
        assert "already waiting" in refused.json()["error"]
        assert metric(small, "conch_llama_cpp_rejected_requests_total", "batched") == rejected + 1
        over_grpc = GrpcStream(grpc_address(small), "batched", chat(QUESTIONS[4]), max_tokens=50)
        try:  # gRPC keeps the code Triton's HTTP endpoint folds into 400
            wait_until(lambda: over_grpc.errors, 30, message="the gRPC refusal")
            assert "queue full:" in over_grpc.errors[0]
        finally:
            over_grpc.cancel()
        short = generate(small.url, "batched", text_input=chat("Say hi."), max_tokens=2)  # the short lane
        assert short.status_code == 200 and 1 <= short.json()["num_output_tokens"] <= 2
        assert waiting.events == []  # the short request overtook it in the lane, not in a slot
    finally:
        for holder in holders:
            holder.cancel()
    waiting.join()
    assert waiting.error is None and waiting.tokens >= 1


def test_a_dead_worker_fails_every_request_at_once_instead_of_hanging(small):
    assert answer(small.url, "dying", text_input=chat("Say hi."), max_tokens=4, top_k=1)
    running = Stream(small.url, "dying", text_input=chat(QUESTIONS[0]), max_tokens=500, min_tokens=500,
                     top_k=1).wait_started()
    killer = generate(small.url, "dying", text_input=chat("KILL THE WORKER"), max_tokens=4)
    assert killer.status_code != 200 and killer.json()["error"].startswith("worker stopped:")
    running.join(30)
    assert running.error is not None and "injected fault" in running.error  # ended, not hanging
    started = time.monotonic()
    later = generate(small.url, "dying", text_input=chat("Say hi."), max_tokens=4)
    # Triton's HTTP generate endpoint answers 400 for any model error; over gRPC it is UNAVAILABLE
    assert later.status_code != 200 and later.json()["error"].startswith("worker stopped:")
    assert "must be reloaded" in later.json()["error"]
    assert time.monotonic() - started < 5  # refused at once (a generous bound: no generation happens)
    assert metric(small, "conch_llama_cpp_worker_up", "dying") == 0
    assert answer(small.url, "batched", text_input=chat("Say hi."), max_tokens=4, top_k=1)  # other models live on
