"""Pure history rules: at most `MAX_TURNS` turns (seed 002: "limited to 20 turns"), then the oldest
turns dropped until the rendered conversation fits the model's context. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

MAX_TURNS = 20
Message = dict[str, str]  # {"role": "user"|"assistant", "content": ...}


@dataclass
class Session:
    """What a session keeps: its model (None: the gateway's default) and its conversation."""

    model: str | None = None
    messages: list[Message] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"model": self.model, "messages": self.messages}

    @classmethod
    def from_json(cls, data: dict) -> "Session":
        return cls(model=data.get("model"), messages=list(data.get("messages", [])))


def estimate_tokens(text: str) -> int:
    """No tokenizer reaches the gateway (Triton tokenizes inside the model), so: about 3 characters
    a token, an over-estimate for English and close for CJK, so trimming errs on the safe side."""
    return len(text) // 3 + 1


def capped(messages: Sequence[Message], max_turns: int = MAX_TURNS) -> list[Message]:
    """The last `max_turns` turns; a turn is a user message and the answer that follows it, so the
    kept history always starts with a user message (templates such as Llama's require it)."""
    kept = list(messages[-2 * max_turns:]) if max_turns > 0 else []
    return kept[1:] if kept and kept[0]["role"] != "user" else kept


def fit(messages: Sequence[Message], budget_tokens: int | None,
        count: Callable[[str], int] = estimate_tokens) -> list[Message]:
    """Drops the oldest whole turns until the messages' tokens fit `budget_tokens`; the newest
    message (the question being asked) is always kept."""
    kept = list(messages)
    if budget_tokens is None:
        return kept
    while len(kept) > 1 and sum(count(m["content"]) + 4 for m in kept) > budget_tokens:
        kept = kept[2:] if len(kept) > 2 else kept[1:]
    return kept
