"""Back-off on 429/503: Retry-After wins when the server sends one (pure, so it is unit-tested)."""

from __future__ import annotations

RETRYABLE = {429, 503}


def delay(attempt: int, retry_after: str | None, base: float = 0.5, cap: float = 30.0) -> float:
    if retry_after:
        try:
            return min(max(float(retry_after), 0.0), cap)
        except ValueError:
            pass  # an HTTP date; fall back to exponential back-off
    return min(base * 2 ** attempt, cap)
