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


def wait_before_retry(status: int, retry_after: str | None, attempt: int, max_retries: int) -> float | None:
    """Seconds to wait before trying again, or None when this answer is final."""
    if status in RETRYABLE and attempt < max_retries:
        return delay(attempt, retry_after)
    return None
