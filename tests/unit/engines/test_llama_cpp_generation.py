"""What one sequence of the llama-cpp runtime turns into, token by token: text, stop strings,
UTF-8 boundaries, end tokens, counts, limits and logit masks (no llama.cpp: tokens are bytes)."""

from __future__ import annotations

import numpy as np
import pytest

from conch_engines.runtimes.llama_cpp.generation import (
    Chunk,
    GenerationParams,
    InvalidRequest,
    LogitRules,
    StopStringMatcher,
    TextOutput,
    output_budget,
)

EOS = 0


def run(tokens: list[int], max_tokens: int = 50, **params) -> list[Chunk]:
    """Feeds `tokens` (byte values; 0 is the end token) until the output finishes."""
    output = TextOutput(GenerationParams(prompt="hi", max_tokens=max_tokens, **params), max_tokens,
                        piece=lambda t: bytes([t]), is_end=lambda t: t == EOS)
    chunks = []
    for token in tokens:
        chunk = output.push(token)
        if chunk is not None:
            chunks.append(chunk)
        if output.finished:
            break
    return chunks


def text_of(chunks) -> str:
    return "".join(c.text for c in chunks)


def test_a_chunk_per_token_and_the_end_token_is_not_counted():
    chunks = run(list(b"abc") + [EOS])
    assert [c.text for c in chunks] == ["a", "b", "c", ""]
    assert chunks[-1].finish_reason == "stop" and all(c.finish_reason is None for c in chunks[:-1])
    assert sum(c.tokens for c in chunks) == 3


def test_max_tokens_ends_with_length_and_the_last_chunk_carries_the_last_text():
    chunks = run(list(b"abcdef"), max_tokens=4)
    assert [c.text for c in chunks] == ["a", "b", "c", "d"]
    assert chunks[-1].finish_reason == "length" and sum(c.tokens for c in chunks) == 4


def test_stop_string_split_across_tokens_is_never_emitted():
    chunks = run(list(b"hello END world"), stop_words=("END",))
    assert text_of(chunks) == "hello "
    assert all("E" not in c.text for c in chunks)
    assert chunks[-1].finish_reason == "stop" and chunks[-1].stop_reason == "END"
    assert sum(c.tokens for c in chunks) == len("hello END")


def test_held_back_prefix_is_released_when_it_is_not_a_stop():
    assert text_of(run(list(b"a EN b") + [EOS], stop_words=("END",))) == "a EN b"


def test_held_back_prefix_is_released_at_the_length_limit():
    chunks = run(list(b"abEN"), max_tokens=4, stop_words=("END",))
    assert text_of(chunks) == "abEN" and chunks[-1].finish_reason == "length"


def test_multibyte_utf8_is_never_split():
    chunks = run(list("猫!".encode()) + [EOS])
    assert [c.text for c in chunks if c.text] == ["猫", "!"]
    assert sum(c.tokens for c in chunks) == 4  # three bytes of 猫, then "!"
    assert chunks[0].tokens == 3


def test_end_id_ends_generation():
    chunks = run(list(b"ab;cd"), end_id=ord(";"))
    assert text_of(chunks) == "ab" and chunks[-1].finish_reason == "stop"


def test_cancel_ends_with_cancelled():
    output = TextOutput(GenerationParams(prompt="", max_tokens=9), 9, piece=lambda t: bytes([t]), is_end=lambda t: False)
    output.push(ord("a"))
    assert output.cancel().finish_reason == "cancelled" and output.finished is not None
    with pytest.raises(AssertionError):
        output.push(ord("b"))


def test_budget_is_max_tokens_or_the_context_left():
    params = GenerationParams(prompt="", max_tokens=100)
    assert output_budget(params, prompt_tokens=10, n_ctx=50) == 40
    assert output_budget(params, prompt_tokens=10, n_ctx=500) == 100
    with pytest.raises(InvalidRequest, match="context window is 10 tokens"):
        output_budget(params, prompt_tokens=10, n_ctx=10)


@pytest.mark.parametrize("params", [dict(max_tokens=0), dict(max_tokens=4, top_p=0.0),
                                    dict(max_tokens=4, temperature=-1.0), dict(max_tokens=4, top_k=-2),
                                    dict(max_tokens=4, min_tokens=-1), dict(max_tokens=4, repetition_penalty=0.0)])
def test_invalid_parameters(params):
    with pytest.raises(InvalidRequest):
        GenerationParams(prompt="", **params).validate()


def test_greedy_is_temperature_zero_or_top_k_one():
    assert GenerationParams(prompt="", max_tokens=1, temperature=0).greedy
    assert GenerationParams(prompt="", max_tokens=1, temperature=0.8, top_k=1).greedy
    assert not GenerationParams(prompt="", max_tokens=1, temperature=0.8).greedy


def test_stop_matcher_handles_overlapping_stops():
    matcher = StopStringMatcher(["abc", "bcd"])
    assert matcher.feed("xab") == "x"
    assert matcher.feed("cd") == ""
    assert matcher.stopped and matcher.matched == "abc"


def test_logit_rules_mask_bad_words_after_their_head_and_ends_before_min_tokens():
    params = GenerationParams(prompt="", max_tokens=9, bad_words=("xy", "z"), min_tokens=2)
    rules = LogitRules.build(params, tokenize=lambda word: list(word.encode()), end_tokens=[EOS])
    logits = np.zeros(256, dtype=np.float32)
    rules.apply(history=list(b"abx"), generated=1, logits=logits)
    assert logits[ord("y")] == -np.inf  # "x" was just generated: "y" would complete "xy"
    assert logits[ord("z")] == -np.inf  # a one-token bad word is always masked
    assert logits[EOS] == -np.inf  # one token generated, two required
    logits[:] = 0
    rules.apply(history=list(b"abc"), generated=2, logits=logits)
    assert logits[ord("y")] == 0 and logits[EOS] == 0 and logits[ord("z")] == -np.inf


def test_no_logit_rules_without_bad_words_or_min_tokens():
    assert LogitRules.build(GenerationParams(prompt="", max_tokens=9), lambda w: [1], [EOS]) is None
