"""When continuous batching changes a request's numbers, measured on the real llama.cpp with the
bundled SmolLM2 (the batching engine driven directly, without Triton, so every sequence's logits
can be compared bit for bit — what the README's determinism section states):

- a request served alone gets the same logits whatever ran before;
- with the default f16 KV cache, a sequence past 256 cached tokens decoded next to others gets
  other logits than alone (llama.cpp's CPU flash attention takes its split-KV kernel only for a
  lone single-token sequence): if this starts to fail, llama.cpp changed and the README must too;
- with `batch_invariant` (q8_0 KV cache) the logits are identical alone, in a batch, and after
  prefix reuse."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Iterator

import pytest

from conch_engines import bundled
from conch_engines.runtimes.llama_cpp import engine as engine_module
from conch_engines.runtimes.llama_cpp.context import ContextSettings, LlamaContext
from conch_engines.runtimes.llama_cpp.engine import Engine, Job
from conch_engines.runtimes.llama_cpp.generation import GenerationParams
from conch_engines.runtimes.llama_cpp.sampling import SequenceSampler
from conch_engines.runtimes.llama_cpp.scheduler import Limits

pytestmark = pytest.mark.triton  # needs the bundled model and llama.cpp (not Triton itself)

TEXT = "The history of Rome spans many centuries of wars, laws, roads and emperors. " * 18
PROMPTS = [f"<|im_start|>user\n{task}: {TEXT}<|im_end|>\n<|im_start|>assistant\n"
           for task in ("Summarize this text", "Which topics does this text mention?", "Translate this text into French")]
NEW_TOKENS = 24


class RecordingSampler(SequenceSampler):
    """Keeps a digest of every logits row the sequence samples from."""

    digests: dict[str, list[str]] = {}  # prompt -> the digests of its latest run

    def __init__(self, llama, params):
        super().__init__(llama, params)
        self._rows = RecordingSampler.digests[params.prompt] = []

    def sample(self, index, history, generated):
        self._rows.append(hashlib.sha1(self._llama.logits(index).tobytes()).hexdigest())
        return super().sample(index, history, generated)


@dataclass
class Served:
    engine: Engine
    llama: LlamaContext
    worker: threading.Thread

    def run_together(self, prompts: list[str]) -> dict[str, list[str]]:
        """Serves the prompts at once (greedy); answers each prompt's logits digests."""
        done = [threading.Event() for _ in prompts]
        for prompt, event in zip(prompts, done):
            params = GenerationParams(prompt=prompt, max_tokens=NEW_TOKENS, temperature=0, min_tokens=NEW_TOKENS)
            emit = lambda chunk, event=event: chunk.finish_reason and event.set()  # noqa: E731
            self.engine.submit(Job(params=params, prompt=self.llama.tokenize(prompt), max_tokens=NEW_TOKENS,
                                   emit=emit, error=lambda message: pytest.fail(message)))
        for event in done:
            assert event.wait(300), "a sequence did not finish"
        return {p: list(RecordingSampler.digests[p]) for p in prompts}


@pytest.fixture
def serve(monkeypatch) -> Iterator:
    """Starts a batching engine on its own llama.cpp context (3 slots, windows of 1,024 tokens)."""
    monkeypatch.setattr(engine_module, "SequenceSampler", RecordingSampler)
    started: list[Served] = []

    def start(kv_cache_type: str, **limits) -> Served:
        limits = Limits(slots=3, short_lane=False, **limits)
        llama = LlamaContext(str(bundled.smollm2().gguf_path), ContextSettings(
            n_ctx=1024, sequences=limits.sequences, batch_tokens=limits.step_tokens, n_threads=2,
            kv_cache_type=kv_cache_type))
        engine = Engine(llama, limits)
        started.append(Served(engine, llama, threading.Thread(target=engine.run, daemon=True)))
        started[-1].worker.start()
        return started[-1]

    yield start
    for served in started:
        served.engine.stop()
        served.worker.join(30)
        served.engine.close()
        served.llama.close()


def test_alone_the_logits_do_not_depend_on_what_ran_before(serve):
    served = serve("f16")
    first = served.run_together(PROMPTS[:1])
    served.run_together(PROMPTS)
    assert served.run_together(PROMPTS[:1]) == first


def test_f16_cache_a_long_sequence_in_a_batch_gets_other_logits_than_alone(serve):
    served = serve("f16")
    alone = served.run_together(PROMPTS[:1])[PROMPTS[0]]
    together = served.run_together(PROMPTS)[PROMPTS[0]]
    assert together[0] == alone[0]  # the first token comes from prefill chunks: the same kernel either way
    assert together[1:] != alone[1:]  # decoding past 256 cells: split-KV kernel alone, not in the batch


def test_batch_invariant_cache_gives_the_same_logits_alone_in_a_batch_and_after_prefix_reuse(serve):
    served = serve("q8_0", prefix_cache=True)
    alone = {p: served.run_together([p])[p] for p in PROMPTS}
    assert served.run_together(PROMPTS) == alone
    assert served.run_together(PROMPTS[1:]) == {p: alone[p] for p in PROMPTS[1:]}  # slots hold their prefixes now


CHAT = ["<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
        for question in ("Describe the water cycle to a class of ten year old students.",
                         "Give a detailed recipe for making pancakes, from the ingredients to serving them.")]


def test_f16_cache_a_reused_prefix_gives_the_same_logits_as_a_fresh_prompt(serve):
    """The default prefix cache (f16, reuse below 256 tokens, ending anywhere — here inside the
    first prefill chunk): the second chat gets bit-identical logits with the shared system prompt
    reused from the first chat's slot and computed afresh."""
    fresh = serve("f16", prefix_cache=False).run_together(CHAT[1:])[CHAT[1]]
    cached = serve("f16")  # the defaults: prefix cache on
    cached.run_together(CHAT[:1])
    reused_before = cached.engine.stats.reused_tokens
    assert cached.run_together(CHAT[1:])[CHAT[1]] == fresh
    reused = cached.engine.stats.reused_tokens - reused_before
    assert 16 < reused < 32, f"the system prompt's tokens should have been reused, not {reused}"
