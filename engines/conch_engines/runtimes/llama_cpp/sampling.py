"""One llama.cpp sampler chain per sequence, so requests decoded in the same batch each keep
their own temperature, top-k/top-p, penalties and random stream.

The chain is the one llama-cpp-python builds for `Llama.generate` with this runtime's settings
(penalties over the last 64 tokens, then greedy, or top-k → top-p → temperature → a seeded
draw), so answers match what the runtime gave before batching. The masks llama.cpp has no
sampler for (bad words, `min_tokens`) are written into the logits first.
"""

from __future__ import annotations

import random
from typing import Sequence

import llama_cpp
import numpy as np

from .context import LlamaContext
from .generation import GenerationParams, LogitRules

PENALTY_LAST_N = 64  # llama-cpp-python's Llama(last_n_tokens_size) default
_RANDOM_SEED = 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: llama.cpp would draw a seed of its own


class SequenceSampler:
    def __init__(self, llama: LlamaContext, params: GenerationParams):
        self._llama = llama
        self._rules = LogitRules.build(params, lambda word: llama.tokenize(word, prompt=False), llama.end_tokens)
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        self._chain = chain
        penalties = (params.repetition_penalty, params.frequency_penalty, params.presence_penalty) != (1.0, 0.0, 0.0)
        # Plain greedy keeps no state: an argmax over the logits row is llama.cpp's greedy sampler
        # (first maximum wins) without copying 49k candidates into a token array per token.
        self._argmax = params.greedy and not penalties
        if penalties:
            self._add(llama_cpp.llama_sampler_init_penalties(
                llama.n_vocab, PENALTY_LAST_N, params.repetition_penalty, params.frequency_penalty, params.presence_penalty))
        if params.greedy:
            self._add(llama_cpp.llama_sampler_init_greedy())
        else:
            if params.top_k > 0:
                self._add(llama_cpp.llama_sampler_init_top_k(params.top_k))
            if params.top_p < 1.0:
                self._add(llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
            self._add(llama_cpp.llama_sampler_init_temp(params.temperature))
            self._add(llama_cpp.llama_sampler_init_dist(seed_of(params.seed)))

    def _add(self, sampler) -> None:
        llama_cpp.llama_sampler_chain_add(self._chain, sampler)

    def sample(self, index: int, history: Sequence[int], generated: int) -> int:
        """The next token of a sequence whose logits are the `index`-th of the last batch;
        `history` is its prompt and output so far. The chain records the token (penalties)."""
        if self._rules is not None or self._argmax:
            logits = self._llama.logits(index)
            if self._rules is not None:
                self._rules.apply(history, generated, logits)
            if self._argmax:
                return int(np.argmax(logits))
        return llama_cpp.llama_sampler_sample(self._chain, self._llama.ctx, index)

    def close(self) -> None:
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)  # frees the samplers added to it too
            self._chain = None


def seed_of(seed: int | None) -> int:
    """llama.cpp seeds are 32-bit; a request's 64-bit seed is folded into that range, never onto
    the value that tells llama.cpp to pick a random seed itself."""
    if seed is None:
        return random.getrandbits(31)
    folded = seed & 0xFFFFFFFF
    return folded - 1 if folded == _RANDOM_SEED else folded
