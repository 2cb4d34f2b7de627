"""Token generation with llama.cpp, free of any Triton types so it can be unit-tested.

The Triton adapter (`triton_model.py`) turns tensors into a `GenerationParams`, calls
`generate()`, and turns each `Chunk` into a response. Everything that decides *what* text
comes out — stop strings, UTF-8 boundaries, end tokens, bad words, token counts — lives here.
"""

from __future__ import annotations

import codecs
import random
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np


class InvalidRequest(ValueError):
    """The request cannot be served as asked (maps to Triton INVALID_ARG)."""


class Unsupported(ValueError):
    """The request asks for a feature this runtime does not have (maps to Triton UNSUPPORTED)."""


@dataclass(frozen=True)
class GenerationParams:
    prompt: str
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 disables top-k, as in TensorRT-LLM
    seed: int | None = None
    stop_words: tuple[str, ...] = ()
    bad_words: tuple[str, ...] = ()
    end_id: int | None = None
    min_tokens: int = 0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stream: bool = False

    def validate(self) -> None:
        if self.max_tokens < 1:
            raise InvalidRequest(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise InvalidRequest(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise InvalidRequest(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise InvalidRequest(f"top_k must be >= 0, got {self.top_k}")
        if self.min_tokens < 0:
            raise InvalidRequest(f"min_tokens must be >= 0, got {self.min_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1


@dataclass
class Chunk:
    """A piece of generated text and the number of tokens generated since the previous chunk."""

    text: str
    tokens: int
    finish_reason: str | None = None  # "stop" | "length" | "cancelled" on the last chunk
    stop_reason: str | None = None  # the stop string that ended generation, on the last chunk


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


class LlamaLike(Protocol):
    """The slice of `llama_cpp.Llama` used here (a fake can stand in for unit tests)."""

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]: ...
    def detokenize(self, tokens: list[int], prev_tokens: list[int] | None = None, special: bool = False) -> bytes: ...
    def set_seed(self, seed: int) -> None: ...
    def n_ctx(self) -> int: ...
    def generate(self, tokens: Sequence[int], **kwargs) -> Iterator[int]: ...


class StopStringMatcher:
    """Holds back text that might be the start of a stop string, so a stop string is never
    emitted, not even partly, when it arrives split across tokens."""

    def __init__(self, stop_words: Sequence[str]):
        self._stops = [s for s in stop_words if s]
        self._pending = ""
        self.stopped = False
        self.matched: str | None = None  # the stop string found, once stopped

    def feed(self, text: str) -> str:
        """Returns the text that is now safe to emit."""
        if not self._stops:
            return text
        self._pending += text
        found = [(i, s) for s in self._stops if (i := self._pending.find(s)) >= 0]
        if found:
            first, self.matched = min(found, key=lambda hit: hit[0])
            self.stopped = True
            safe, self._pending = self._pending[:first], ""
            return safe
        hold = self._longest_stop_prefix_suffix()
        cut = len(self._pending) - hold
        safe, self._pending = self._pending[:cut], self._pending[cut:]
        return safe

    def flush(self) -> str:
        rest, self._pending = self._pending, ""
        return rest

    def _longest_stop_prefix_suffix(self) -> int:
        best = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(self._pending)), best, -1):
                if self._pending.endswith(stop[:n]):
                    best = n
                    break
        return best


@dataclass
class _LogitRules:
    """Dynamic logit masks: bad word sequences, and end tokens forbidden before `min_tokens`."""

    prompt_len: int
    bad_sequences: list[list[int]] = field(default_factory=list)
    end_tokens: list[int] = field(default_factory=list)
    min_tokens: int = 0

    def __call__(self, input_ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        generated = len(input_ids) - self.prompt_len
        if generated < self.min_tokens:
            logits[self.end_tokens] = -np.inf
        for seq in self.bad_sequences:
            head = seq[:-1]
            if not head or (len(input_ids) >= len(head) and list(input_ids[-len(head):]) == head):
                logits[seq[-1]] = -np.inf
        return logits


def generate(
    llm: LlamaLike,
    params: GenerationParams,
    is_eog: Callable[[int], bool],
    usage: Usage,
    cancelled: Callable[[], bool] = lambda: False,
) -> Iterator[Chunk]:
    """Yields chunks of new text, one per generated token (merged while a stop-string or UTF-8
    sequence is incomplete). The last chunk carries `finish_reason`. `usage` is filled in."""
    params.validate()
    prompt_tokens = llm.tokenize(params.prompt.encode("utf-8"), add_bos=_adds_bos(llm), special=True)
    usage.input_tokens = len(prompt_tokens)
    room = llm.n_ctx() - len(prompt_tokens)
    if room < 1:
        raise InvalidRequest(
            f"the prompt has {len(prompt_tokens)} tokens; the context window is {llm.n_ctx()} tokens"
        )
    max_tokens = min(params.max_tokens, room)

    llm.set_seed(params.seed if params.seed is not None else random.getrandbits(31))
    rules = _logit_rules(llm, params, len(prompt_tokens), is_eog)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    matcher = StopStringMatcher(params.stop_words)

    generated = 0
    unreported = 0
    finish = "length"
    before_stop = ""
    sampler_args = dict(
        temp=0.0 if params.greedy else params.temperature,
        top_k=params.top_k,
        top_p=params.top_p,
        min_p=0.0,
        typical_p=1.0,
        repeat_penalty=params.repetition_penalty,
        presence_penalty=params.presence_penalty,
        frequency_penalty=params.frequency_penalty,
        logits_processor=[rules] if rules else None,
    )
    for token in llm.generate(prompt_tokens, **sampler_args):
        if cancelled():
            finish = "cancelled"
            break
        if is_eog(token) or token == params.end_id:
            finish = "stop"
            break
        generated += 1
        unreported += 1
        text = matcher.feed(decoder.decode(llm.detokenize([token])))
        if matcher.stopped:
            finish, before_stop = "stop", text
            break
        if text:
            yield Chunk(text=text, tokens=unreported)
            unreported = 0
        if generated >= max_tokens:
            break
    usage.output_tokens = generated
    if matcher.stopped:
        tail = before_stop
    else:
        tail = matcher.feed(decoder.decode(b"", final=True))
        if matcher.stopped:
            finish = "stop"
        tail += matcher.flush()
    yield Chunk(text=tail, tokens=unreported, finish_reason=finish, stop_reason=matcher.matched)


def _adds_bos(llm: LlamaLike) -> bool:
    metadata = getattr(llm, "metadata", {}) or {}
    return metadata.get("tokenizer.ggml.add_bos_token", "true") == "true"


def _logit_rules(llm: LlamaLike, params: GenerationParams, prompt_len: int, is_eog) -> _LogitRules | None:
    if not params.bad_words and params.min_tokens == 0:
        return None
    bad = [llm.tokenize(w.encode("utf-8"), add_bos=False, special=True) for w in params.bad_words if w]
    ends = [t for t in (getattr(llm, "token_eos", lambda: None)(), params.end_id) if t is not None]
    return _LogitRules(prompt_len=prompt_len, bad_sequences=[b for b in bad if b], end_tokens=ends,
                       min_tokens=params.min_tokens)
