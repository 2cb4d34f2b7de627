"""What one generated sequence turns into, free of llama.cpp and Triton so it can be unit-tested.

`GenerationParams` is a request as the Triton adapter parsed it. `TextOutput` follows one sequence
token by token — UTF-8 boundaries, stop strings, end tokens, `max_tokens`, token counts — and says
what text may be sent after each token. `LogitRules` are the per-token logit masks that llama.cpp's
samplers do not have: bad word sequences, and end tokens forbidden before `min_tokens`.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from typing import Callable, Sequence

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
        if self.repetition_penalty <= 0:
            raise InvalidRequest(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

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


def output_budget(params: GenerationParams, prompt_tokens: int, n_ctx: int) -> int:
    """Tokens this request may generate: `max_tokens`, less when the context window runs out first
    (the answer then ends with finish reason "length"). A prompt that leaves no room is refused."""
    room = n_ctx - prompt_tokens
    if room < 1:
        raise InvalidRequest(f"the prompt has {prompt_tokens} tokens; the context window is {n_ctx} tokens")
    return min(params.max_tokens, room)


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


class TextOutput:
    """One sequence's output as its tokens arrive. `push` answers the chunk to send after each
    token (None while the text is held back: an incomplete UTF-8 character or a possible stop
    string); the chunk that carries `finish_reason` is the last one."""

    def __init__(self, params: GenerationParams, max_tokens: int, piece: Callable[[int], bytes],
                 is_end: Callable[[int], bool]):
        self._end_id = params.end_id
        self._max_tokens = max_tokens
        self._piece = piece
        self._is_end = is_end
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._matcher = StopStringMatcher(params.stop_words)
        self._unreported = 0
        self.generated = 0
        self.finished: Chunk | None = None

    def push(self, token: int) -> Chunk | None:
        assert self.finished is None, "the sequence has already finished"
        if self._is_end(token) or token == self._end_id:
            return self._finish("stop", "")
        self.generated += 1
        self._unreported += 1
        text = self._matcher.feed(self._decoder.decode(self._piece(token)))
        if self._matcher.stopped:
            return self._finish("stop", text, flush=False)
        if self.generated >= self._max_tokens:
            return self._finish("length", text)
        if not text:
            return None
        chunk, self._unreported = Chunk(text=text, tokens=self._unreported), 0
        return chunk

    def cancel(self) -> Chunk:
        return self._finish("cancelled", "", flush=False)

    def _finish(self, reason: str, text: str, flush: bool = True) -> Chunk:
        if flush:  # what the decoder and the stop matcher held back belongs to the answer
            text += self._matcher.feed(self._decoder.decode(b"", final=True))
            if self._matcher.stopped:
                reason = "stop"
            else:
                text += self._matcher.flush()
        self.finished = Chunk(text=text, tokens=self._unreported, finish_reason=reason,
                              stop_reason=self._matcher.matched)
        self._unreported = 0
        return self.finished


@dataclass
class LogitRules:
    """Dynamic logit masks: bad word sequences, and end tokens forbidden before `min_tokens`."""

    bad_sequences: list[list[int]] = field(default_factory=list)
    end_tokens: list[int] = field(default_factory=list)
    min_tokens: int = 0

    def apply(self, history: Sequence[int], generated: int, logits: np.ndarray) -> None:
        """Masks `logits` in place for the token after `history` (prompt and output so far)."""
        if generated < self.min_tokens:
            logits[self.end_tokens] = -np.inf
        for seq in self.bad_sequences:
            head = seq[:-1]
            if not head or (len(history) >= len(head) and list(history[-len(head):]) == head):
                logits[seq[-1]] = -np.inf

    @classmethod
    def build(cls, params: GenerationParams, tokenize: Callable[[str], list[int]],
              end_tokens: Sequence[int]) -> "LogitRules | None":
        if not params.bad_words and params.min_tokens == 0:
            return None
        bad = [tokenize(word) for word in params.bad_words if word]
        ends = [t for t in (*end_tokens, params.end_id) if t is not None]
        return cls(bad_sequences=[b for b in bad if b], end_tokens=ends, min_tokens=params.min_tokens)
