"""Tokens a request used, as the server counted them (prompt + completion), gathered while it
runs: the generation core adds them here, the limits middleware charges them to the caller's
tokens-per-minute window when the answer is complete. A context variable, so the `n` choices and
batch items a request spawns add to the same total."""

from __future__ import annotations

from contextvars import ContextVar


class Usage:
    __slots__ = ("tokens",)

    def __init__(self) -> None:
        self.tokens = 0


_current: ContextVar[Usage | None] = ContextVar("conch_usage", default=None)


def begin() -> tuple[Usage, object]:
    usage = Usage()
    return usage, _current.set(usage)


def end(token: object) -> None:
    _current.reset(token)


def charge(tokens: int | None) -> None:
    usage = _current.get()
    if usage is not None and tokens:
        usage.tokens += tokens
