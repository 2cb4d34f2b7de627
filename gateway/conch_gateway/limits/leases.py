"""Shared quotas without a round trip per request: each replica leases part of a caller's budget.

A replica asks the shared store (one atomic call, `SharedQuotas.reserve`) for a few of the caller's
requests of the current window and a few in-flight slots, then admits locally until they run out:
the store has counted them already, so the fleet never admits more than the limit, however many
replicas share it. Leases are sized from what is left and how fast this replica admits — far from a
limit a busy replica calls the store a few times a second; near it, once per request (exactly as
if there were no leases). Tokens are charged to the store in batches (`FLUSH_S`), on the next call
at the latest; a replica admits on its own only while the tokens it spent since its last call stay
under a share of what the store had left, so near the token limit every admission asks the store.
A replica's view is never older than `SYNC_S`. In-flight slots held but unused are given back when
a replica holds more spare than it may (none when the limit is small, so a freed slot is free for
every replica at once), and lapse on their own if the replica dies (`HOLD_TTL_MS`).

The price of leasing, stated: near a requests-per-minute limit one replica may refuse while another
still holds a lease it has not used (at most an eighth of what remained when it took it); a token
limit may be passed by about one answer per replica (answers not yet charged), as a single replica
already passes it by what its last admitted answers generate; with many in-flight slots, spares
held by one replica may refuse a request at another a little below the limit (`spare_slots`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from ..auth.credentials import Quota
from .store import WINDOW_MS, StoreUnavailable, Verdict

log = logging.getLogger("conch.gateway.limits")

LEASE_S = 0.25  # a lease covers about this long of the replica's admissions
SYNC_S = 1.0  # the longest a replica admits on what it knew of the caller's usage
FLUSH_S = 0.05  # tokens of finished answers wait at most this long to be charged
HOLD_TTL_MS = 30_000  # held slots lapse after this unless renewed (every third of it)
SHARE_OF_REMAINING = 8  # a lease takes at most 1/8 of what the window has left
SPARE_SLOTS_FROM = 32  # below this max_parallel, slots are taken and given back one by one


@dataclass(frozen=True, slots=True)
class Ask:
    admitting: bool  # refuse (and say why) if this request cannot be admitted
    requests: int  # to reserve from the requests window
    slots: int  # in-flight slots this replica wants to hold after the call
    needed_slots: int  # fewer than this and the admission is refused
    tokens: int  # finished answers' tokens to charge


@dataclass(frozen=True, slots=True)
class Grant:
    requests: int  # reserved for this replica
    exceeded: str  # "" | "requests" | "tokens" | "parallel"
    now_ms: int
    requests_used: int  # the window's count, this grant included
    requests_reset_ms: int
    tokens_used: int
    tokens_reset_ms: int
    slots: int  # now held by this replica


class SharedQuotas(Protocol):
    async def reserve(self, principal: str, quota: Quota, holder: str, ask: Ask) -> Grant: ...


@dataclass(slots=True)
class _Account:
    """One caller's lease on this replica."""

    quota: Quota
    requests_left: int = 0
    requests_used: int = 0  # the store's count at the last call (our unused lease included)
    requests_ends: float = 0.0  # monotonic
    tokens_used: int = 0
    tokens_ends: float = 0.0
    tokens_pending: int = 0  # charged here, not yet in the store
    slots_held: int = 0
    in_flight: int = 0
    # A call is on its way asking the store for the slots in use when it left: until its answer
    # sets slots_held, no slot may be taken here (a call that shrinks the hold would leave the
    # taken ones unheld, free for other replicas).
    reserving: bool = False
    peak: int = 0  # most in flight since the last call
    synced_at: float = -math.inf
    rate: float = 0.0  # admissions per second, measured over the last half second or more
    counted: int = 0
    counting_since: float = 0.0
    refusal: Verdict | None = None  # the store's "requests"/"tokens" refusal, true until its window ends
    refused_until: float = 0.0
    background: asyncio.Task | None = None
    background_sleeping: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def spare_slots(quota: Quota, in_flight: int) -> int:
    """How many slots beyond those in use a replica may hold (none while it runs nothing)."""
    if quota.max_parallel is None or quota.max_parallel < SPARE_SLOTS_FROM or in_flight == 0:
        return 0
    return min(quota.max_parallel // SPARE_SLOTS_FROM, in_flight // 4 + 1)


class LeasedQuotaStore:
    """A `QuotaStore` on top of a `SharedQuotas`: admits from this replica's lease, renews it when
    it runs out or grows stale, and settles answers locally, charging the store in the background."""

    def __init__(self, shared: SharedQuotas, *, on_failure: Callable[[Exception], None] = lambda exc: None,
                 monotonic: Callable[[], float] = time.monotonic, clock: Callable[[], float] = time.time):
        self._shared = shared
        self._on_failure = on_failure
        self._monotonic = monotonic
        self._clock = clock
        self.holder = os.urandom(6).hex()  # this replica, in the store's in-flight tallies
        self._accounts: dict[str, _Account] = {}
        self._renewer: asyncio.Task | None = None

    async def admit(self, principal: str, quota: Quota, lease: str) -> Verdict:
        account = self._accounts.get(principal)
        if account is None:
            account = self._accounts[principal] = _Account(quota, counting_since=self._monotonic())
            self._forget_idle()
        if account.quota != quota:  # the key's limits changed: what was known of the old ones is void
            account.quota, account.refusal = quota, None
        if account.refusal is not None and self._monotonic() < account.refused_until:
            return self._refused_again(account)
        if self._admit_locally(account):
            return self._verdict(account)
        async with account.lock:
            if self._admit_locally(account):  # the call another admission just made brought enough
                return self._verdict(account)
            grant = await self._sync(principal, account, admitting=True)
            if grant.exceeded:
                refused = Verdict(False, grant.exceeded, grant.now_ms, grant.requests_used, grant.requests_reset_ms,
                                  grant.tokens_used + account.tokens_pending, grant.tokens_reset_ms)
                if grant.exceeded != "parallel":  # a window's count only grows until it ends
                    account.refusal = refused
                    reset_ms = grant.requests_reset_ms if grant.exceeded == "requests" else grant.tokens_reset_ms
                    account.refused_until = self._monotonic() + reset_ms / 1000
                return refused
            self._take(account)
            return self._verdict(account, grant.now_ms)

    def settle(self, principal: str, quota: Quota, lease: str, tokens: int) -> None:
        account = self._accounts.get(principal)
        if account is None:
            return
        if quota.max_parallel is not None:
            account.in_flight -= 1
        if tokens and quota.tokens_per_minute is not None:
            account.tokens_pending += tokens
        if account.slots_held > account.in_flight:
            spare = spare_slots(quota, account.slots_held)
            if not spare:  # a small limit: the slot is given back now, for every replica
                self._in_background(principal, account, 0.0)
            elif not account.in_flight or account.slots_held - account.in_flight > 2 * spare:
                self._in_background(principal, account, FLUSH_S)  # not at every dip of a busy replica's load
        if account.tokens_pending:
            self._in_background(principal, account, FLUSH_S)

    # -- local decisions ------------------------------------------------------------------------

    def _admit_locally(self, account: _Account) -> bool:
        now = self._monotonic()
        quota = account.quota
        if now - account.synced_at >= SYNC_S:
            return False
        if quota.requests_per_minute is not None and (account.requests_left <= 0 or now >= account.requests_ends):
            return False
        if quota.tokens_per_minute is not None:
            # tokens spent here since the last call may reach a share of what the store had left
            known = account.tokens_used if now < account.tokens_ends else 0
            if account.tokens_pending >= (quota.tokens_per_minute - known) // SHARE_OF_REMAINING:
                return False
        if quota.max_parallel is not None and (account.in_flight >= account.slots_held or account.reserving):
            return False
        self._take(account)
        return True

    def _refused_again(self, account: _Account) -> Verdict:
        before = account.refusal
        left_ms = max(0, round((account.refused_until - self._monotonic()) * 1000))
        now_ms = int(self._clock() * 1000)
        if before.exceeded == "requests":
            return Verdict(False, "requests", now_ms, before.requests_used, left_ms, before.tokens_used,
                           before.tokens_reset_ms)
        return Verdict(False, "tokens", now_ms, before.requests_used, before.requests_reset_ms, before.tokens_used,
                       left_ms)

    def _take(self, account: _Account) -> None:
        if account.quota.requests_per_minute is not None:
            account.requests_left -= 1
        if account.quota.max_parallel is not None:
            account.in_flight += 1
            account.peak = max(account.peak, account.in_flight)
        account.counted += 1
        now = self._monotonic()
        if now - account.counting_since >= 0.5:
            account.rate = account.counted / (now - account.counting_since)
            account.counted, account.counting_since = 0, now

    def _tokens_used(self, account: _Account, now: float) -> int:
        return (account.tokens_used if now < account.tokens_ends else 0) + account.tokens_pending

    def _lease_size(self, account: _Account, now: float) -> int:
        limit = account.quota.requests_per_minute
        if limit is None:
            return 0
        used = account.requests_used if now < account.requests_ends else 0
        by_rate = math.ceil(max(account.rate, account.counted / max(now - account.counting_since, 0.05)) * LEASE_S)
        return max(1, min(by_rate, (limit - used) // SHARE_OF_REMAINING))

    def _verdict(self, account: _Account, now_ms: int | None = None) -> Verdict:
        now = self._monotonic()
        requests_reset = max(0, round((account.requests_ends - now) * 1000)) if now < account.requests_ends else WINDOW_MS
        tokens_reset = max(0, round((account.tokens_ends - now) * 1000)) if now < account.tokens_ends else WINDOW_MS
        return Verdict(True, "", now_ms if now_ms is not None else int(self._clock() * 1000),
                       account.requests_used - account.requests_left, requests_reset,
                       self._tokens_used(account, now), tokens_reset)

    # -- calls to the shared store --------------------------------------------------------------

    async def _sync(self, principal: str, account: _Account, *, admitting: bool) -> Grant:
        """One call to the store (the account's lock held): charge pending tokens, reserve a lease
        (when admitting), hold as many slots as wanted."""
        now = self._monotonic()
        quota = account.quota
        needed = account.in_flight + admitting
        base = needed
        if not admitting and account.in_flight and spare_slots(quota, account.peak):
            base = max(account.in_flight, account.peak)  # spares kept through a busy replica's dips
        if quota.max_parallel is None:
            needed = base = 0
        ask = Ask(admitting, self._lease_size(account, now) if admitting else 0, base + spare_slots(quota, base),
                  needed, account.tokens_pending)
        account.peak = account.in_flight
        account.reserving = True
        try:
            grant = await self._shared.reserve(principal, quota, self.holder, ask)
        finally:
            account.reserving = False
        now = self._monotonic()
        account.tokens_pending -= ask.tokens
        ends = now + grant.requests_reset_ms / 1000
        # What is left of a lease from an earlier window is void: it was counted in that window.
        same_window = now < account.requests_ends and abs(ends - account.requests_ends) <= 1.0
        account.requests_left = (account.requests_left if same_window else 0) + grant.requests
        account.requests_ends = ends
        account.requests_used = grant.requests_used
        account.tokens_used, account.tokens_ends = grant.tokens_used, now + grant.tokens_reset_ms / 1000
        account.slots_held = grant.slots
        account.synced_at = now
        if account.slots_held and self._renewer is None:
            self._renewer = asyncio.get_running_loop().create_task(self._renew_forever(), name="quota-holds")
        return grant

    def _in_background(self, principal: str, account: _Account, delay_s: float) -> None:
        if account.background is not None:
            if delay_s or not account.background_sleeping:
                return
            account.background.cancel()  # still waiting to batch: now instead
        account.background = asyncio.get_running_loop().create_task(self._settle_later(principal, account, delay_s))

    async def _settle_later(self, principal: str, account: _Account, delay_s: float) -> None:
        try:
            if delay_s:
                account.background_sleeping = True
                await asyncio.sleep(delay_s)
            account.background_sleeping = False
            async with account.lock:
                account.background = None
                await self._sync(principal, account, admitting=False)
        except StoreUnavailable as exc:
            # the tokens stay pending (charged on the next call that succeeds); held slots lapse
            self._on_failure(exc)
            log.warning("%d tokens of %s wait to be charged: %s", account.tokens_pending, principal, exc)
        except asyncio.CancelledError:
            return
        finally:
            if account.background is asyncio.current_task():
                account.background = None

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(HOLD_TTL_MS / 3000)
            for principal, account in list(self._accounts.items()):
                if account.slots_held or account.tokens_pending:
                    try:
                        async with account.lock:
                            await self._sync(principal, account, admitting=False)
                    except StoreUnavailable as exc:
                        self._on_failure(exc)
                        log.warning("renewing the quota lease of %s failed: %s", principal, exc)

    def _forget_idle(self) -> None:
        if len(self._accounts) <= 10_000:
            return
        now = self._monotonic()
        self._accounts = {p: a for p, a in self._accounts.items()
                          if a.in_flight or a.slots_held or a.tokens_pending or a.lock.locked()
                          or now < max(a.requests_ends, a.tokens_ends)}

    async def close(self) -> None:
        """Charges what is pending and gives held slots back, then stops."""
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        for account in self._accounts.values():
            if account.background is not None:
                await asyncio.gather(account.background, return_exceptions=True)
        for principal, account in self._accounts.items():
            if account.tokens_pending or account.slots_held:
                try:
                    async with account.lock:
                        account.in_flight = 0
                        await self._sync(principal, account, admitting=False)
                except StoreUnavailable:
                    pass
        close = getattr(self._shared, "close", None)
        if close is not None:
            await close()
