"""The llama-cpp runtime's batching policy: slots, the bounded queue, the short lane, chunked
prefill within a budget, and prefix reuse (pure logic, no llama.cpp)."""

from __future__ import annotations

import pytest

from conch_engines.runtimes.llama_cpp.scheduler import Limits, QueueFull, Scheduler, Step, reusable_prefix


def limits(**overrides) -> Limits:
    base = dict(slots=2, max_waiting=2, prefill_chunk=4, prefill_budget=8, short_max_tokens=4, short_max_prompt=4)
    return Limits(**{**base, **overrides})


def submit(scheduler: Scheduler, name: str, prompt_len: int = 3, max_tokens: int = 50) -> str:
    scheduler.submit(name, list(range(prompt_len)), max_tokens)
    return name


def slots_of(scheduler: Scheduler) -> dict[str, int]:
    return {s.job: s.slot for s in scheduler.sequences()}


def run_prefill(scheduler: Scheduler) -> None:
    while (step := scheduler.plan()).prefill:
        scheduler.done(step)


def test_requests_take_free_slots_in_arrival_order_and_the_rest_wait():
    scheduler = Scheduler(limits())
    for name in "abc":
        submit(scheduler, name)
    admitted = scheduler.admit()
    assert [s.job for s in admitted] == ["a", "b"] and slots_of(scheduler) == {"a": 1, "b": 2}  # 0: the short lane
    assert scheduler.waiting_jobs() == ["c"]
    scheduler.release(admitted[0])
    assert [s.job for s in scheduler.admit()] == ["c"] and slots_of(scheduler)["c"] == 1


def test_the_queue_is_bounded_and_counts_only_requests_that_must_wait():
    scheduler = Scheduler(limits(max_waiting=1, short_lane=False))
    submit(scheduler, "a"), submit(scheduler, "b")  # two free slots: these will not wait
    submit(scheduler, "c")
    with pytest.raises(QueueFull, match="1 requests are already waiting"):
        submit(scheduler, "d")
    scheduler.admit()
    assert scheduler.waiting_jobs() == ["c"]
    with pytest.raises(QueueFull):
        submit(scheduler, "d")


def test_a_short_request_takes_the_short_lane_while_long_ones_hold_every_slot():
    scheduler = Scheduler(limits())
    for name in "abcd":
        submit(scheduler, name)  # long: 50 new tokens
    scheduler.admit()
    submit(scheduler, "short", prompt_len=3, max_tokens=2)
    assert [s.job for s in scheduler.admit()] == ["short"]
    assert slots_of(scheduler)["short"] == 0  # the lane
    assert scheduler.waiting_jobs() == ["c", "d"]  # long requests never use the lane


def test_a_short_request_is_accepted_for_the_lane_even_when_the_queue_is_full():
    scheduler = Scheduler(limits(max_waiting=1))
    for name in "abc":
        submit(scheduler, name)
    scheduler.admit()
    with pytest.raises(QueueFull):
        submit(scheduler, "long")
    submit(scheduler, "short", max_tokens=2)
    assert "short" in [s.job for s in scheduler.admit()]


def test_short_prompts_prefer_the_lane_and_leave_regular_slots_to_long_ones():
    scheduler = Scheduler(limits())
    submit(scheduler, "short", max_tokens=1)
    submit(scheduler, "long1"), submit(scheduler, "long2")
    scheduler.admit()
    assert slots_of(scheduler) == {"short": 0, "long1": 1, "long2": 2}


def test_long_prompts_are_not_short_whatever_they_ask_for():
    scheduler = Scheduler(limits(slots=1))
    submit(scheduler, "a")
    scheduler.admit()
    submit(scheduler, "long-prompt", prompt_len=5, max_tokens=1)
    assert scheduler.admit() == []


def test_prefill_goes_in_chunks_within_the_budget():
    scheduler = Scheduler(limits(slots=3, prefill_budget=8))
    submit(scheduler, "long", prompt_len=10)
    submit(scheduler, "mid", prompt_len=6)
    submit(scheduler, "tiny", prompt_len=2)
    scheduler.admit()
    first = scheduler.plan()
    assert [(c.sequence.job, c.start, c.end) for c in first.prefill] == [("long", 0, 4), ("mid", 0, 4)]
    assert first.decode == []
    scheduler.done(first)
    second = scheduler.plan()
    assert [(c.sequence.job, c.start, c.end, c.last) for c in second.prefill] == [
        ("long", 4, 8, False), ("mid", 4, 6, True), ("tiny", 0, 2, True)]
    scheduler.done(second)
    third = scheduler.plan()
    assert [s.job for s in third.decode] == ["mid", "tiny"]
    assert [(c.start, c.end) for c in third.prefill] == [(8, 10)]


def test_the_first_chunk_runs_even_when_it_alone_exceeds_the_budget_left():
    scheduler = Scheduler(limits(slots=2, prefill_chunk=8, prefill_budget=8))
    submit(scheduler, "a", prompt_len=20), submit(scheduler, "b", prompt_len=20)
    scheduler.admit()
    assert [(c.sequence.job, c.end) for c in scheduler.plan().prefill] == [("a", 8)]


def test_running_sequences_decode_every_step_while_a_long_prompt_is_prefilled():
    scheduler = Scheduler(limits(slots=2))
    submit(scheduler, "running", prompt_len=2)
    scheduler.admit()
    run_prefill(scheduler)
    submit(scheduler, "long", prompt_len=40)
    scheduler.admit()
    for _ in range(10):
        step = scheduler.plan()
        assert [s.job for s in step.decode] == ["running"]
        assert step.prefill[0].end - step.prefill[0].start == 4
        scheduler.done(step)


def test_a_withdrawn_request_leaves_the_queue():
    scheduler = Scheduler(limits(slots=1))
    submit(scheduler, "a"), submit(scheduler, "b")
    scheduler.admit()
    assert scheduler.withdraw("b") and not scheduler.withdraw("b")
    assert scheduler.waiting == 0


def test_prefix_reuse_stops_before_the_last_prompt_token_and_at_the_limit():
    assert reusable_prefix([1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 5, 6, 7, 0]) == 7
    assert reusable_prefix([1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6, 7, 8]) == 7  # not the whole prompt
    assert reusable_prefix([1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 5, 6, 7, 8, 9], limit=5) == 5
    assert reusable_prefix([1, 2, 3], [1, 2, 3, 4, 5], limit=None) == 3
    assert reusable_prefix([9, 2], [1, 2]) == 0
    assert reusable_prefix([1], [1]) == 0 and reusable_prefix([], [1, 2]) == 0


def test_with_the_prefix_cache_a_request_takes_the_slot_holding_its_prefix():
    scheduler = Scheduler(limits(prefix_cache=True, short_lane=False))
    scheduler.submit("old", [7, 7, 7, 7, 7], 5)
    (old,) = scheduler.admit()
    scheduler.submit("other", [1, 2, 3, 4, 5], 5)
    (other,) = scheduler.admit()
    scheduler.release(other, cached_tokens=[1, 2, 3, 4, 5])
    scheduler.release(old, cached_tokens=[7, 7, 7, 7, 7, 1, 2])
    scheduler.submit("new", [7, 7, 7, 7, 7, 7, 3], 5)
    (new,) = scheduler.admit()
    assert new.slot == old.slot and new.reused == new.fed == 5
    first = scheduler.plan().prefill[0]
    assert (first.start, first.end) == (5, 7)  # the rest of the prompt, a chunk from where the cache ends


def test_the_prefix_cache_limit_caps_reuse():
    scheduler = Scheduler(limits(prefix_cache=True, prefix_cache_limit=3, short_lane=False))
    scheduler.submit("old", [7] * 9, 5)
    (old,) = scheduler.admit()
    scheduler.release(old, cached_tokens=[7] * 9)
    scheduler.submit("new", [7] * 9, 5)
    (new,) = scheduler.admit()
    assert new.reused == 3


def test_without_the_prefix_cache_nothing_is_reused():
    scheduler = Scheduler(limits(prefix_cache=False, short_lane=False))
    scheduler.submit("old", [7] * 9, 5)
    (old,) = scheduler.admit()
    scheduler.release(old, cached_tokens=[7] * 9)
    scheduler.submit("new", [7] * 9, 5)
    (new,) = scheduler.admit()
    assert new.reused == 0 and scheduler.cached_slots() == {}


def test_limits_are_checked():
    with pytest.raises(ValueError):
        Limits(slots=0)
    with pytest.raises(ValueError):
        Limits(prefill_chunk=64, prefill_budget=32)
    with pytest.raises(ValueError):
        Limits(prefix_cache_limit=-1)
    assert Limits(slots=8).sequences == 9 and Limits(slots=8, short_lane=False).sequences == 8
    assert Limits(slots=2).lane == 0 and list(Limits(slots=2).regular) == [1, 2]
    assert list(Limits(slots=2, short_lane=False).regular) == [0, 1]


def test_after_a_reused_prefix_chunks_count_from_where_the_cache_ends():
    """A prompt of up to one chunk of new tokens takes one step, wherever the reused prefix ended."""
    scheduler = Scheduler(limits(prefix_cache=True, short_lane=False, prefill_chunk=4, prefill_budget=8))
    scheduler.submit("old", [7] * 5, 5)
    (old,) = scheduler.admit()
    scheduler.release(old, cached_tokens=[7] * 5)
    scheduler.submit("new", [7] * 5 + [1, 2, 3, 4, 5, 6], 5)
    (new,) = scheduler.admit()
    assert new.fed == 5
    steps = []
    while new.prefilling:
        chunk = scheduler.plan().prefill[0]
        steps.append((chunk.start, chunk.end))
        scheduler.done(Step(prefill=[chunk]))
    assert steps == [(5, 9), (9, 11)]
