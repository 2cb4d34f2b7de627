"""The pure history rules of chat sessions: the 20-turn cap and trimming to the model's context."""

from __future__ import annotations

from conch_gateway.sessions.history import MAX_TURNS, capped, estimate_tokens, fit


def turns(n: int) -> list[dict[str, str]]:
    return [m for i in range(n) for m in ({"role": "user", "content": f"q{i}"},
                                          {"role": "assistant", "content": f"a{i}"})]


def test_cap_keeps_the_newest_twenty_turns():
    assert MAX_TURNS == 20
    kept = capped(turns(25))
    assert len(kept) == 40 and kept[0]["content"] == "q5" and kept[-1]["content"] == "a24"
    assert capped(turns(3)) == turns(3)


def test_cap_counts_the_new_question_as_a_turn():
    kept = capped(turns(20) + [{"role": "user", "content": "new"}])
    assert kept[0] == {"role": "user", "content": "q1"}  # never an answer without its question
    assert kept[-1]["content"] == "new" and len(kept) == 39  # 19 whole turns + the new one


def test_fit_drops_whole_oldest_turns_until_the_budget_holds():
    count = len  # one token a character, to make the sums visible
    history = turns(3) + [{"role": "user", "content": "now"}]
    # every message costs len(content) + 4 = 6 or 7 tokens; 7 messages = 6*6 + 7 = 43
    assert fit(history, 43, count) == history
    assert fit(history, 42, count) == history[2:]  # q0/a0 dropped together
    assert fit(history, 20, count) == history[4:]
    assert fit(history, 1, count) == history[-1:]  # the question itself is always sent


def test_fit_without_a_known_context_keeps_everything():
    assert fit(turns(30), None) == turns(30)


def test_estimate_errs_high():
    assert estimate_tokens("") == 1
    assert estimate_tokens("a" * 30) == 11
    assert estimate_tokens("你好世界") == 2
