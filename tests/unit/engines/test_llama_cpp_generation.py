"""The llama-cpp runtime's generation loop, with a scripted stand-in for llama.cpp."""

from __future__ import annotations

import pytest

from conch_engines.runtimes.llama_cpp.generation import (
    GenerationParams,
    InvalidRequest,
    StopStringMatcher,
    Usage,
    generate,
)

EOS = 0


class ScriptedLlama:
    """Tokens are characters (id = code point); `generate` replays a fixed continuation."""

    metadata = {"tokenizer.ggml.add_bos_token": "false"}

    def __init__(self, continuation: list[int], n_ctx: int = 64):
        self.continuation = continuation
        self._n_ctx = n_ctx
        self.seed = None
        self.sampler_args = None

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return list(text)

    def detokenize(self, tokens, prev_tokens=None, special=False) -> bytes:
        return bytes(tokens)

    def set_seed(self, seed: int) -> None:
        self.seed = seed

    def n_ctx(self) -> int:
        return self._n_ctx

    def token_eos(self) -> int:
        return EOS

    def generate(self, tokens, **kwargs):
        self.sampler_args = kwargs
        yield from self.continuation


def run(llm, **params) -> tuple[list, Usage]:
    usage = Usage()
    chunks = list(generate(llm, GenerationParams(prompt="hi", **params), lambda t: t == EOS, usage))
    return chunks, usage


def text_of(chunks) -> str:
    return "".join(c.text for c in chunks)


def test_streams_a_chunk_per_token_and_counts_them():
    chunks, usage = run(ScriptedLlama(list(b"abc") + [EOS]), max_tokens=10)
    assert [c.text for c in chunks] == ["a", "b", "c", ""]
    assert chunks[-1].finish_reason == "stop"
    assert usage.output_tokens == 3 and usage.input_tokens == 2
    assert sum(c.tokens for c in chunks) == 3


def test_length_limit():
    chunks, usage = run(ScriptedLlama(list(b"abcdef")), max_tokens=4)
    assert text_of(chunks) == "abcd" and chunks[-1].finish_reason == "length" and usage.output_tokens == 4


def test_stop_string_split_across_tokens_is_never_emitted():
    chunks, usage = run(ScriptedLlama(list(b"hello END world")), max_tokens=50, stop_words=("END",))
    assert text_of(chunks) == "hello "
    assert all("E" not in c.text for c in chunks)
    assert chunks[-1].finish_reason == "stop"
    assert usage.output_tokens == len("hello END")


def test_held_back_prefix_is_released_when_it_is_not_a_stop():
    chunks, _ = run(ScriptedLlama(list(b"a EN b")), max_tokens=50, stop_words=("END",))
    assert text_of(chunks) == "a EN b"


def test_multibyte_utf8_is_never_split():
    chunks, usage = run(ScriptedLlama(list("猫!".encode())), max_tokens=10)
    assert [c.text for c in chunks if c.text] == ["猫", "!"]
    assert usage.output_tokens == 4  # three bytes of 猫, then "!"
    assert sum(c.tokens for c in chunks) == 4


def test_end_id_ends_generation():
    chunks, usage = run(ScriptedLlama(list(b"ab;cd")), max_tokens=10, end_id=ord(";"))
    assert text_of(chunks) == "ab" and usage.output_tokens == 2


def test_prompt_longer_than_context_is_rejected():
    with pytest.raises(InvalidRequest, match="context window"):
        run(ScriptedLlama([], n_ctx=2), max_tokens=5)


def test_max_tokens_is_clamped_to_the_context_left():
    chunks, usage = run(ScriptedLlama(list(b"abcdefgh"), n_ctx=5), max_tokens=100)
    assert usage.output_tokens == 3


def test_greedy_and_seed_reach_the_sampler():
    llm = ScriptedLlama([EOS])
    run(llm, max_tokens=4, top_k=1, temperature=0.8, seed=7)
    assert llm.sampler_args["temp"] == 0.0 and llm.seed == 7
    llm = ScriptedLlama([EOS])
    run(llm, max_tokens=4, temperature=0.8, top_p=0.5)
    assert llm.sampler_args["temp"] == 0.8 and llm.sampler_args["top_p"] == 0.5 and llm.seed is not None


@pytest.mark.parametrize("params", [dict(max_tokens=0), dict(max_tokens=4, top_p=0.0),
                                    dict(max_tokens=4, temperature=-1.0), dict(max_tokens=4, top_k=-2)])
def test_invalid_parameters(params):
    with pytest.raises(InvalidRequest):
        run(ScriptedLlama([]), **params)


def test_stop_matcher_handles_overlapping_stops():
    matcher = StopStringMatcher(["abc", "bcd"])
    assert matcher.feed("xab") == "x"
    assert matcher.feed("cd") == ""
    assert matcher.stopped
