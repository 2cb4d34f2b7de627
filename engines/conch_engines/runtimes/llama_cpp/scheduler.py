"""Continuous batching policy: which sequences share the next `llama_decode`, pure logic only.

A fixed number of sequence slots decode together. Between two steps, waiting requests take the
slots that finished; a request that finds every slot taken waits in a bounded queue (a full
queue refuses it at once). Prompts are prefilled in chunks of `prefill_chunk` tokens, a bounded
number of prompt tokens per step, so a long prompt slows the running streams by a chunk per
step instead of stopping them for the whole prompt.

Fairness: slots are given in arrival order, so no request is overtaken for ever. One extra slot,
the short lane, serves only requests asking for at most `short_max_tokens` new tokens with a
prompt of at most `short_max_prompt` tokens: such a request does not wait behind long
generations, at most behind another short one.

Chunks are counted from where the slot's cache ends (the prompt's start, or the end of a reused
prefix): below 64 tokens a chunk, a token's numbers do not depend on the chunk it came in (README:
determinism), so a prompt of up to `prefill_chunk` new tokens needs one step. With the prefix cache, a request takes the free slot whose cached tokens share the
longest prefix with its prompt and computes only the rest (`reusable_prefix`; the README on
determinism says why answers do not change).
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence


class QueueFull(RuntimeError):
    """Every slot is busy and the waiting queue is at its limit."""


@dataclass(frozen=True)
class Limits:
    slots: int = 8  # sequences decoded together (engine.maxBatchSize)
    max_waiting: int = 64  # requests that may wait for a slot; more are refused
    # On CPU a prompt token costs about what a decoded token does (llama.cpp has no batched kernel
    # for most quantizations), so a step lasts about as long as it has tokens: these bound how
    # long a prompt holds up the running streams (one step's extra tokens). Chunks stay under 64
    # tokens, where llama.cpp's CPU flash attention would switch to a tiled kernel that rounds
    # differently: a prompt's numbers then do not depend on how its chunks share steps. 48 holds a
    # short chat (SmolLM2's template alone is ~30 tokens) in one step.
    prefill_chunk: int = 48  # prompt tokens of one sequence in one step
    prefill_budget: int = 256  # prompt tokens of all sequences in one step (at least one chunk runs)
    short_lane: bool = True  # one more slot, for short requests only
    short_max_tokens: int = 16  # what counts as short: new tokens asked for…
    short_max_prompt: int = 256  # …and prompt tokens
    prefix_cache: bool = True  # keep each slot's tokens after a request, to reuse a common prefix
    # Leading tokens whose cached entries may be reused (None: all). With the f16 KV cache, entries
    # past 256 may have been computed by llama.cpp's split-KV attention kernel (a lone sequence
    # decoding one token), which rounds differently from a fresh prefill; below 256 they never are.
    prefix_cache_limit: int | None = 256

    def __post_init__(self):
        if self.slots < 1 or self.max_waiting < 0 or self.prefill_chunk < 1:
            raise ValueError(f"invalid scheduler limits: {self}")
        if self.prefill_chunk >= 64:  # llama.cpp's tiled attention kernel: README, determinism
            raise ValueError("prefill_chunk must stay below 64 tokens")
        if self.prefill_budget < self.prefill_chunk:
            raise ValueError("prefill_budget must hold at least one prefill chunk")
        if self.prefix_cache_limit is not None and self.prefix_cache_limit < 0:
            raise ValueError("prefix_cache_limit must be >= 0")

    @property
    def sequences(self) -> int:
        """Sequence ids the llama.cpp context needs: the short lane (id 0) and the slots."""
        return self.slots + (1 if self.short_lane else 0)

    @property
    def lane(self) -> int | None:
        """The short lane's sequence id. It comes first and slots are filled lowest id first, so
        the busy ids stay contiguous (llama.cpp puts a contiguous run of per-sequence KV streams
        in one pass over the weights)."""
        return 0 if self.short_lane else None

    @property
    def regular(self) -> range:
        """The sequence ids of the regular slots."""
        return range(self.sequences - self.slots, self.sequences)

    @property
    def step_tokens(self) -> int:
        """The most tokens one step can put in a batch."""
        return self.sequences + self.prefill_budget


@dataclass(eq=False)
class Running:
    """A request holding a slot. `fed` prompt tokens are in the KV cache; once the whole prompt
    is, every step feeds the token sampled last."""

    job: Any
    slot: int
    prompt: Sequence[int]
    fed: int = 0
    reused: int = 0  # prompt tokens found in the slot's cache, not computed again
    admitted_at: int = 0  # admission order, which is also prefill order

    @property
    def prefilling(self) -> bool:
        return self.fed < len(self.prompt)


@dataclass(frozen=True)
class PrefillChunk:
    sequence: Running
    start: int
    end: int

    @property
    def last(self) -> bool:
        """Does this chunk end the prompt? Then its last token's logits give the first new token."""
        return self.end == len(self.sequence.prompt)


@dataclass
class Step:
    decode: list[Running] = field(default_factory=list)  # one token each: the one sampled last
    prefill: list[PrefillChunk] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.decode or self.prefill)

    @property
    def tokens(self) -> int:
        return len(self.decode) + sum(c.end - c.start for c in self.prefill)


@dataclass(eq=False)
class _Waiting:
    job: Any
    prompt: Sequence[int]
    max_tokens: int


class Scheduler:
    """Not thread-safe: the owner serialises calls."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self._waiting: deque[_Waiting] = deque()
        self._running: dict[int, Running] = {}  # slot -> sequence
        self._cached: dict[int, list[int]] = {}  # slot -> tokens its KV cache holds (prefix cache)
        self._order = itertools.count()

    # -- what the gauges show --------------------------------------------------------------
    @property
    def waiting(self) -> int:
        """Requests not holding a slot yet (some may get one at the next step)."""
        return len(self._waiting)

    @property
    def running(self) -> int:
        return len(self._running)

    def sequences(self) -> list[Running]:
        return list(self._running.values())

    def waiting_jobs(self) -> list[Any]:
        return [w.job for w in self._waiting]

    # -- requests in and out ---------------------------------------------------------------
    def submit(self, job: Any, prompt: Sequence[int], max_tokens: int) -> None:
        """Queues a request; raises QueueFull when it would have to wait and the queue is full.
        Whether it finds a slot at once is decided by `admit`, at the next step."""
        free = sum(1 for slot in self.limits.regular if slot not in self._running)
        if len(self._waiting) - free >= self.limits.max_waiting and not self._room_for(prompt, max_tokens):
            raise QueueFull(f"all {self.limits.slots} sequence slots are busy and {self.limits.max_waiting} "
                            f"requests are already waiting for one (the limit); retry later")
        self._waiting.append(_Waiting(job, prompt, max_tokens))

    def withdraw(self, job: Any) -> bool:
        """Removes a request that is still waiting (cancelled before it got a slot)."""
        for entry in self._waiting:
            if entry.job is job:
                self._waiting.remove(entry)
                return True
        return False

    def release(self, sequence: Running, cached_tokens: Sequence[int] = ()) -> None:
        """The sequence finished: its slot is free from the next step. With the prefix cache,
        `cached_tokens` are the tokens left in the slot's KV cache, offered to later requests."""
        del self._running[sequence.slot]
        if self.limits.prefix_cache:
            self._cached[sequence.slot] = list(cached_tokens)

    def admit(self) -> list[Running]:
        """Gives free slots to waiting requests: in arrival order, and the short lane to the first
        short request waiting. With the prefix cache, a request takes the free slot whose cached
        tokens share the longest reusable prefix with its prompt."""
        admitted = []
        lane = self.limits.lane
        for entry in list(self._waiting):
            free = [s for s in self.limits.regular if s not in self._running]
            if lane is not None and lane not in self._running and self._is_short(entry):
                free.insert(0, lane)  # a short request leaves the regular slots to long ones
            if not free:
                if lane is None or lane in self._running:
                    break
                continue  # only the short lane is free: look for a short request further back
            slot, reused = self._best_slot(free, entry.prompt)
            self._waiting.remove(entry)
            sequence = Running(entry.job, slot, entry.prompt, fed=reused, reused=reused,
                                 admitted_at=next(self._order))
            self._running[slot] = sequence
            self._cached.pop(slot, None)
            admitted.append(sequence)
        return admitted

    def plan(self) -> Step:
        """The next step: one token for every sequence past its prompt, and prompt chunks, oldest
        admission first, within the prefill budget (the first chunk always runs)."""
        step = Step()
        budget = self.limits.prefill_budget
        for sequence in sorted(self._running.values(), key=lambda s: s.admitted_at):
            if not sequence.prefilling:
                step.decode.append(sequence)
                continue
            end = min(len(sequence.prompt), sequence.fed + self.limits.prefill_chunk)
            size = end - sequence.fed
            if step.prefill and size > budget:
                continue
            step.prefill.append(PrefillChunk(sequence, sequence.fed, end))
            budget -= size
        return step

    @staticmethod
    def done(step: Step) -> None:
        """Records that the step's prompt chunks are in the KV cache."""
        for chunk in step.prefill:
            chunk.sequence.fed = chunk.end

    def cached_slots(self) -> dict[int, list[int]]:
        return dict(self._cached)

    # -- helpers -----------------------------------------------------------------------------
    def _is_short(self, entry: _Waiting) -> bool:
        return self._short(entry.prompt, entry.max_tokens)

    def _short(self, prompt: Sequence[int], max_tokens: int) -> bool:
        return max_tokens <= self.limits.short_max_tokens and len(prompt) <= self.limits.short_max_prompt

    def _room_for(self, prompt: Sequence[int], max_tokens: int) -> bool:
        """Would this request get a slot at the next step without waiting behind the queue?"""
        lane_free = self.limits.short_lane and self.limits.lane not in self._running
        return lane_free and self._short(prompt, max_tokens) and not any(self._is_short(w) for w in self._waiting)

    def _best_slot(self, free: list[int], prompt: Sequence[int]) -> tuple[int, int]:
        if not self.limits.prefix_cache:
            return free[0], 0
        limit = self.limits.prefix_cache_limit
        best = max(free, key=lambda s: (reusable_prefix(self._cached.get(s, ()), prompt, limit),
                                        s not in self._cached))  # ties: a slot with nothing cached
        return best, reusable_prefix(self._cached.get(best, ()), prompt, limit)


def reusable_prefix(cached: Sequence[int], prompt: Sequence[int], limit: int | None = None) -> int:
    """Prompt tokens whose KV cache entries can be kept: the common prefix, at most `limit` tokens,
    short of the whole prompt (the last prompt token must be computed to give the logits of the
    first new one). It may end anywhere: every prompt token's entries and logits come out with
    the same bits whatever chunk it was prefilled in (per-row attention and matmuls below 64
    tokens a chunk, measured in tests/integration/test_llama_cpp_determinism.py)."""
    common = 0
    for a, b in zip(cached, prompt):
        if a != b:
            break
        common += 1
    if limit is not None:
        common = min(common, limit)
    return max(0, min(common, len(prompt) - 1))
