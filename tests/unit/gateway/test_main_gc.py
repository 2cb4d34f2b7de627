"""`python -m conch_gateway` tunes Python's garbage collector for the process (CONCH_GC_THRESHOLD)."""

from __future__ import annotations

import gc

import pytest

from conch_gateway import __main__ as entry


@pytest.fixture
def restored_gc():
    threshold, enabled = gc.get_threshold(), gc.isenabled()
    yield
    gc.set_threshold(*threshold)
    (gc.enable if enabled else gc.disable)()


def _run_main(monkeypatch) -> tuple[tuple[int, int, int], bool]:
    seen = {}

    def run(app, **kwargs):  # uvicorn.run: what the process looks like when it starts serving
        seen["threshold"], seen["enabled"] = gc.get_threshold(), gc.isenabled()

    monkeypatch.setattr(entry.uvicorn, "run", run)
    monkeypatch.setattr(entry, "create_app", lambda settings: object())
    entry.main([])
    return seen["threshold"], seen["enabled"]


def test_the_gateway_process_collects_young_garbage_less_often_by_default(monkeypatch, restored_gc):
    gc.set_threshold(700, 10, 10)
    threshold, enabled = _run_main(monkeypatch)
    assert threshold == (20_000, 10, 10) and enabled


def test_the_threshold_is_a_setting_and_zero_turns_the_collector_off(monkeypatch, restored_gc):
    monkeypatch.setenv("CONCH_GC_THRESHOLD", "5000")
    assert _run_main(monkeypatch) == ((5000, 10, 10), True)
    monkeypatch.setenv("CONCH_GC_THRESHOLD", "0")
    assert _run_main(monkeypatch)[1] is False
