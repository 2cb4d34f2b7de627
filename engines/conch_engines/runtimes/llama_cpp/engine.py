"""The continuous-batching loop: every step, one `llama_decode` carries the next token of each
running sequence and the prompt chunks the scheduler chose; then each sequence with logits
samples its own token and its output is emitted. Requests join and leave between steps.

The engine owns the llama.cpp context and runs on one thread (`run`); `submit` and `stop` may be
called from any thread. It knows nothing of Triton: a `Job` brings the request, a callback that
receives each chunk of output, and a callback that says whether the client went away.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from .context import LlamaContext
from .generation import Chunk, GenerationParams, InvalidRequest, TextOutput
from .sampling import SequenceSampler
from .scheduler import Limits, Running, Scheduler, Step

WAITING_CANCEL_CHECK_S = 0.1  # how often waiting requests are asked whether their client left
# An idle engine's first step waits while requests keep arriving (each gap at most GATHER_GAP_S,
# GATHER_MAX_S in all): N requests sent at once reach the model milliseconds apart (gateway, Triton),
# and a first step prefilling only the first would make every other one wait a whole step.
GATHER_GAP_S = 0.003
GATHER_MAX_S = 0.025


class EngineStopped(RuntimeError):
    """The engine takes no more jobs (it failed, or the model is being unloaded)."""


@dataclass(eq=False)
class Job:
    params: GenerationParams
    prompt: list[int]
    max_tokens: int  # already cut to the room left in the context window
    emit: Callable[[Chunk], None]  # each chunk of output; the last carries finish_reason
    fail: Callable[[str], None] = lambda message: None  # answers an error instead: the engine died
    error: Callable[[str], None] = lambda message: None  # answers an error instead: this request failed
    cancelled: Callable[[], bool] = lambda: False


@dataclass(eq=False)
class _Live:
    """Engine-side state of a sequence holding a slot."""

    running: Running
    output: TextOutput
    sampler: SequenceSampler | None  # None until built (building it may fail for this request alone)
    tokens: list[int] = field(default_factory=list)  # prompt, then every sampled token
    in_cache: int = 0  # leading `tokens` whose KV entries are in the cache


@dataclass
class _StepBatch:
    tokens: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    seq_ids: list[int] = field(default_factory=list)
    logits: list[bool] = field(default_factory=list)
    owners: list[tuple[int, "_Live"]] = field(default_factory=list)  # (batch index, sequence) to sample


@dataclass
class EngineStats:
    waiting: int = 0
    running: int = 0
    steps: int = 0
    reused_tokens: int = 0  # prompt tokens taken from a slot's cache instead of computed (prefix cache)


class Engine:
    def __init__(self, llama: LlamaContext, limits: Limits):
        self._llama = llama
        self._scheduler = Scheduler(limits)
        self._limits = limits
        self._cond = threading.Condition()
        self._live: dict[int, _Live] = {}  # slot -> sequence (engine thread only)
        self._stopping = False
        self._closed = False  # no more jobs accepted
        self._cache_clean = True
        self._next_waiting_check = 0.0
        self.stats = EngineStats()

    # -- any thread --------------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        """Queues a job (raises `QueueFull` when the waiting queue is at its limit)."""
        if not job.prompt:  # nothing to compute the first token from
            raise InvalidRequest("the prompt must be at least one token long (it is empty)")
        with self._cond:
            if self._closed:
                raise EngineStopped("the engine has stopped")
            self._scheduler.submit(job, job.prompt, job.max_tokens)
            self.stats.waiting = self._scheduler.waiting
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def close_intake(self) -> list[Job]:
        """Refuses every later job; returns the jobs not finished yet (waiting or running), which
        nobody else will answer once the engine thread has stopped."""
        with self._cond:
            self._closed = True
            return self._scheduler.waiting_jobs() + [s.job for s in self._scheduler.sequences()]

    # -- the engine thread -----------------------------------------------------------------------
    def run(self, after_step: Callable[[], None] = lambda: None) -> None:
        while not self._stopping:
            self.step()
            after_step()

    def step(self, idle_wait: float = 0.5) -> bool:
        """One step of the batch; waits up to `idle_wait` for work when there is none. Returns
        whether anything was decoded. An exception means the context can no longer be used; a
        failure that concerns one request (its sampler) fails that request only."""
        self._drop_cancelled()
        if not self._live:
            self._gather_arrivals()
        with self._cond:
            admitted = self._scheduler.admit()
        for running in admitted:
            self.stats.reused_tokens += running.reused
            self._start(running)
        with self._cond:
            plan = self._scheduler.plan()
            self.stats.waiting, self.stats.running = self._scheduler.waiting, self._scheduler.running
            if not plan:
                if not self._live and not self._limits.prefix_cache and not self._cache_clean:
                    self._llama.clear()
                    self._cache_clean = True
                if not self._stopping:
                    self._cond.wait(idle_wait)
                return False
        self._cache_clean = False

        batch = self._layout(plan)
        self._llama.decode(batch.tokens, batch.positions, batch.seq_ids, batch.logits)
        self.stats.steps += 1
        with self._cond:
            self._scheduler.done(plan)
        for running in plan.decode:
            self._live[running.slot].in_cache += 1
        for chunk in plan.prefill:
            self._live[chunk.sequence.slot].in_cache = chunk.end

        for index, live in batch.owners:
            try:
                token = live.sampler.sample(index, live.tokens, live.output.generated)
            except Exception as exc:  # noqa: BLE001 — this request's sampler failed, not the context
                self._fail(live, exc)
                continue
            live.tokens.append(token)
            chunk = live.output.push(token)
            if chunk is not None and not self._emit(live, chunk):
                self._finish(live)
            elif live.output.finished is not None:
                self._finish(live)
        return True

    def _gather_arrivals(self) -> None:
        with self._cond:
            seen = self._scheduler.waiting
            deadline = time.monotonic() + GATHER_MAX_S
            while seen and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(min(GATHER_GAP_S, left))
                if self._scheduler.waiting == seen:
                    return  # a gap without arrivals: the burst is in
                seen = self._scheduler.waiting

    def _layout(self, plan: Step) -> _StepBatch:
        """The step's tokens, ordered by sequence id: with a KV stream per sequence, llama.cpp
        splits a batch into ubatches of consecutive sequence ids in increasing order (one pass
        over the weights each), so this order lets a run of busy slots share one pass."""
        batch = _StepBatch()
        pieces = [(r.slot, self._live[r.slot], [self._live[r.slot].tokens[-1]], len(self._live[r.slot].tokens) - 1, True)
                  for r in plan.decode]
        pieces += [(c.sequence.slot, self._live[c.sequence.slot], c.sequence.prompt[c.start:c.end], c.start, c.last)
                   for c in plan.prefill]
        for seq_id, live, tokens, start, wants_logits in sorted(pieces, key=lambda p: p[0]):
            batch.tokens += tokens
            batch.positions += range(start, start + len(tokens))
            batch.seq_ids += [seq_id] * len(tokens)
            batch.logits += [False] * len(tokens)
            if wants_logits:
                batch.logits[-1] = True
                batch.owners.append((len(batch.tokens) - 1, live))
        return batch

    def close(self) -> None:
        for live in self._live.values():
            if live.sampler is not None:
                live.sampler.close()
        self._live.clear()

    # -- helpers -----------------------------------------------------------------------------------
    def _start(self, running: Running) -> None:
        job: Job = running.job
        self._llama.forget(running.slot, running.reused)
        output = TextOutput(job.params, job.max_tokens, self._llama.piece, self._llama.is_end)
        live = _Live(running, output, sampler=None, tokens=list(job.prompt), in_cache=running.reused)
        self._live[running.slot] = live
        try:
            live.sampler = SequenceSampler(self._llama, job.params)
        except Exception as exc:  # noqa: BLE001 — a request llama.cpp cannot sample for fails alone
            self._fail(live, exc)

    def _fail(self, live: _Live, exc: Exception) -> None:
        try:
            live.running.job.error(f"generation failed: {exc}")
        except Exception:  # noqa: BLE001 — the client is gone anyway
            pass
        self._finish(live)

    def _drop_cancelled(self) -> None:
        """Running sequences whose client left are dropped before each step; waiting requests are
        asked less often (each question is a round trip to Triton)."""
        for live in list(self._live.values()):
            if _is_cancelled(live.running.job):
                self._emit(live, live.output.cancel())
                self._finish(live)
        now = time.monotonic()
        if now < self._next_waiting_check:
            return
        self._next_waiting_check = now + WAITING_CANCEL_CHECK_S
        with self._cond:
            waiting = self._scheduler.waiting_jobs()
        for job in waiting:
            if _is_cancelled(job):
                with self._cond:
                    withdrawn = self._scheduler.withdraw(job)
                if withdrawn:
                    _safe_emit(job, Chunk(text="", tokens=0, finish_reason="cancelled"))

    def _emit(self, live: _Live, chunk: Chunk) -> bool:
        return _safe_emit(live.running.job, chunk)

    def _finish(self, live: _Live) -> None:
        slot = live.running.slot
        del self._live[slot]
        if live.sampler is not None:
            live.sampler.close()
        if self._limits.prefix_cache:
            cached = live.tokens[:live.in_cache]
        else:
            cached = []
            self._llama.forget(slot)
        with self._cond:
            self._scheduler.release(live.running, cached)


def _safe_emit(job: Job, chunk: Chunk) -> bool:
    """Sends a chunk; a client that cannot be answered any more is treated as gone."""
    try:
        job.emit(chunk)
        return True
    except Exception:  # noqa: BLE001 — the response sender failed: the request is over
        return False


def _is_cancelled(job: Job) -> bool:
    try:
        return job.cancelled()
    except Exception:  # noqa: BLE001 — Triton cannot tell: the request is past answering
        return True
