"""Per-caller quotas: requests per minute, tokens per minute, requests in flight.

Windows are fixed, one minute long, starting at the caller's first request in it (the Redis key's
expiry): within a window at most `requests_per_minute` requests are admitted, however many replicas
share the store. Tokens are the server's own counts, charged when an answer is complete; a request
is refused once its window's tokens reached the limit, so the last admitted requests may take a
window past it by what they generate. In flight counts requests until their answer ends.

`Quotas` picks the store: the shared one (Redis) when configured and reachable, through this
replica's leases on it (leases.py: no round trip per request), otherwise the in-process one — or,
with `redis_failure=closed`, a 503 — and says which in a log line and a metric. Never a 500.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from .. import errors
from ..auth.credentials import Quota
from .leases import LeasedQuotaStore, SharedQuotas
from .store import WINDOW_MS, QuotaStore, StoreUnavailable, Verdict

__all__ = ["WINDOW_MS", "LocalQuotaStore", "QuotaStore", "Quotas", "StoreUnavailable", "Verdict", "rate_headers",
           "refusal"]

log = logging.getLogger("conch.gateway.limits")


def rate_headers(quota: Quota, verdict: Verdict) -> list[tuple[bytes, bytes]]:
    """Seed 001's X-RateLimit-Limit/-Remaining/-Reset (requests; Reset in epoch seconds), plus the
    same three for tokens (`-Tokens`) when a token limit applies."""
    headers = []
    if quota.requests_per_minute is not None:
        headers += _triple(b"", quota.requests_per_minute, verdict.requests_used, verdict.now_ms,
                           verdict.requests_reset_ms)
    if quota.tokens_per_minute is not None:
        headers += _triple(b"-Tokens", quota.tokens_per_minute, verdict.tokens_used, verdict.now_ms,
                           verdict.tokens_reset_ms)
    return headers


def _triple(suffix: bytes, limit: int, used: int, now_ms: int, reset_ms: int) -> list[tuple[bytes, bytes]]:
    return [(b"X-RateLimit-Limit" + suffix, str(limit).encode()),
            (b"X-RateLimit-Remaining" + suffix, str(max(0, limit - used)).encode()),
            (b"X-RateLimit-Reset" + suffix, str(math.ceil((now_ms + reset_ms) / 1000)).encode())]


def refusal(quota: Quota, verdict: Verdict) -> errors.ConchError:
    if verdict.exceeded == "requests":
        wait_ms, what = verdict.requests_reset_ms, f"{quota.requests_per_minute} requests per minute"
    elif verdict.exceeded == "tokens":
        wait_ms, what = verdict.tokens_reset_ms, f"{quota.tokens_per_minute} tokens per minute"
    else:
        wait_ms, what = 1000, f"{quota.max_parallel} requests at a time"
    headers = {k.decode(): v.decode() for k, v in rate_headers(quota, verdict)}
    return errors.rate_limited(f"rate limit exceeded: this credential may make {what}; retry later",
                               max(1, math.ceil(wait_ms / 1000)), headers)


class LocalQuotaStore:
    """The same windows and leases, in this process (one replica, or Redis unreachable)."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._windows: dict[tuple[str, str], list[int]] = {}  # (principal, kind) → [count, ends at ms]
        self._leases: dict[str, set[str]] = {}

    def _window(self, principal: str, kind: str, now_ms: int) -> list[int]:
        window = self._windows.get((principal, kind))
        if window is None or window[1] <= now_ms:
            if len(self._windows) > 100_000:  # forget ended windows of callers gone quiet
                self._windows = {k: v for k, v in self._windows.items() if v[1] > now_ms}
            window = self._windows[(principal, kind)] = [0, now_ms + WINDOW_MS]
        return window

    async def admit(self, principal: str, quota: Quota, lease: str) -> Verdict:
        now = int(self._clock() * 1000)
        requests, tokens = self._window(principal, "requests", now), self._window(principal, "tokens", now)
        leases = self._leases.setdefault(principal, set())
        exceeded = ""
        if quota.requests_per_minute is not None and requests[0] >= quota.requests_per_minute:
            exceeded = "requests"
        elif quota.tokens_per_minute is not None and tokens[0] >= quota.tokens_per_minute:
            exceeded = "tokens"
        elif quota.max_parallel is not None and len(leases) >= quota.max_parallel:
            exceeded = "parallel"
        if not exceeded:
            requests[0] += 1
            if quota.max_parallel is not None:
                leases.add(lease)
        return Verdict(not exceeded, exceeded, now, requests[0], requests[1] - now, tokens[0], tokens[1] - now)

    def settle(self, principal: str, quota: Quota, lease: str, tokens: int) -> None:
        if tokens and quota.tokens_per_minute is not None:
            self._window(principal, "tokens", int(self._clock() * 1000))[0] += tokens
        leases = self._leases.get(principal)
        if leases is not None:
            leases.discard(lease)
            if not leases:
                del self._leases[principal]


@dataclass(slots=True)
class Lease:
    store: QuotaStore
    principal: str
    quota: Quota
    id: str
    verdict: Verdict


class Quotas:
    def __init__(self, shared: SharedQuotas | None, registry: CollectorRegistry, *, on_failure: str = "local",
                 retry_after_failure_s: float = 1.0):
        self._shared = LeasedQuotaStore(shared, on_failure=self._failed) if shared is not None else None
        self._local = LocalQuotaStore()
        self._on_failure = on_failure
        self._retry_s = retry_after_failure_s
        self._down_until = 0.0
        self._ids = itertools.count()
        self._replica = os.urandom(4).hex()
        self.refused = Counter("conch_rate_limited_total", "Requests refused 429 by a caller's quota, by limit.",
                               ["limit"], registry=registry)
        self.store_errors = Counter("conch_quota_store_errors_total", "Failed calls to the shared quota store "
                                    "(Redis).", registry=registry)
        self.store_up = Gauge("conch_quota_store_up", "1 while the shared quota store (Redis) answers, 0 while the "
                              "gateway counts alone or refuses (redis_failure).", registry=registry)
        self.store_up.set(1 if shared is not None else 0)

    async def admit(self, principal: str, quota: Quota) -> Lease:
        lease_id = f"{self._replica}:{next(self._ids)}"
        store = self._store()
        try:
            verdict = await store.admit(principal, quota, lease_id)
        except StoreUnavailable as exc:
            self._failed(exc)
            store = self._fallback()
            verdict = await store.admit(principal, quota, lease_id)
        if not verdict.allowed:
            self.refused.labels(verdict.exceeded).inc()
            raise refusal(quota, verdict)
        return Lease(store, principal, quota, lease_id, verdict)

    def settle(self, lease: Lease, tokens: int) -> None:
        """Charges the tokens and frees the in-flight slot, after the answer (nothing waits for it)."""
        lease.store.settle(lease.principal, lease.quota, lease.id, tokens)

    def _store(self) -> QuotaStore:
        if self._shared is None:
            return self._local
        if self._down_until and time.monotonic() < self._down_until:
            return self._fallback()
        if self._down_until:
            self._down_until = 0.0
            self.store_up.set(1)
            log.warning("the shared quota store answers again: quotas are shared by every replica again")
        return self._shared

    def _fallback(self) -> QuotaStore:
        if self._on_failure == "closed":
            raise errors.service_not_configured("LIMITS_UNAVAILABLE", "the quota store is unreachable and this "
                                                "gateway is set to refuse requests meanwhile (redis_failure=closed)")
        return self._local

    def _failed(self, exc: Exception) -> None:
        self.store_errors.inc()
        if not self._down_until:
            self.store_up.set(0)
            log.error("the shared quota store (Redis) failed (%s): %s for the next %.0fs", exc,
                      "refusing requests 503" if self._on_failure == "closed" else
                      "counting in this replica only (the fleet may admit up to limit x replicas)", self._retry_s)
        self._down_until = time.monotonic() + self._retry_s

    async def close(self) -> None:
        if self._shared is not None:
            await self._shared.close()
