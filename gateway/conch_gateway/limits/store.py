"""What every quota store answers, and how it fails."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..auth.credentials import Quota

WINDOW_MS = 60_000


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    exceeded: str  # "" | "requests" | "tokens" | "parallel"
    now_ms: int
    requests_used: int  # in the current window, this request included when allowed
    requests_reset_ms: int  # until the requests window ends
    tokens_used: int
    tokens_reset_ms: int


class StoreUnavailable(Exception):
    """The shared store did not answer (in time)."""


class QuotaStore(Protocol):
    async def admit(self, principal: str, quota: Quota, lease: str) -> Verdict: ...
    def settle(self, principal: str, quota: Quota, lease: str, tokens: int) -> None:
        """Records a finished answer here and now; a shared store charges it in the background."""
