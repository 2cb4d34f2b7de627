"""The quota store shared by every replica: one Redis, one atomic Lua script per admission.

A single script reads the caller's two windows and lease set, decides, and counts the request, all
under Redis's one-script-at-a-time execution, with Redis's own clock (`TIME`) — so N replicas admit
exactly as many requests as one would. A second script settles an answer (tokens charged, lease
freed); leases of requests still running are renewed every third of their lifetime, so only a
dead replica's leases lapse. Every call touches one caller's keys, which share a hash tag (`{…}`).
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..auth.credentials import Quota
from .quotas import LEASE_TTL_MS, WINDOW_MS, StoreUnavailable, Verdict

log = logging.getLogger("conch.gateway.limits")

ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local rpm, tpm, maxpar = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local function counter(key)
  local ttl = redis.call('PTTL', key)
  if ttl == -1 then redis.call('DEL', key) end
  if ttl < 0 then return 0, window end
  return tonumber(redis.call('GET', key) or '0'), ttl
end
local req, req_ttl = counter(KEYS[1])
local tok, tok_ttl = counter(KEYS[2])
local exceeded = ''
if rpm > 0 and req >= rpm then exceeded = 'requests'
elseif tpm > 0 and tok >= tpm then exceeded = 'tokens'
elseif maxpar > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= maxpar then exceeded = 'parallel' end
end
if exceeded ~= '' then return {0, exceeded, now, req, req_ttl, tok, tok_ttl} end
if maxpar > 0 then
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[6]), ARGV[5])
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[6]))
end
if rpm > 0 then
  req = redis.call('INCR', KEYS[1])
  if req == 1 then redis.call('PEXPIRE', KEYS[1], window); req_ttl = window end
end
return {1, '', now, req, req_ttl, tok, tok_ttl}
"""

SETTLE = """
local tokens = tonumber(ARGV[2])
if tokens > 0 then
  redis.call('INCRBY', KEYS[1], tokens)
  if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1])) end
end
if ARGV[3] ~= '' then redis.call('ZREM', KEYS[2], ARGV[3]) end
return 1
"""

RENEW = """
local t = redis.call('TIME')
local expires = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', expires, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""


def _keys(principal: str) -> tuple[str, str, str]:
    tag = f"conch:quota:{{{principal}}}"
    return f"{tag}:requests", f"{tag}:tokens", f"{tag}:leases"


class RedisQuotaStore:
    def __init__(self, url: str, *, timeout_s: float = 0.25, lease_ttl_ms: int = LEASE_TTL_MS):
        # No retries inside the client: a slow or absent Redis must cost one timeout, then the
        # fallback decides (quotas.Quotas).
        self._redis = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                           retry=Retry(NoBackoff(), 0), health_check_interval=0)
        self._timeout_s = timeout_s
        self._lease_ttl_ms = lease_ttl_ms
        self._admit = self._redis.register_script(ADMIT)
        self._settle = self._redis.register_script(SETTLE)
        self._renew = self._redis.register_script(RENEW)
        self._live: dict[str, str] = {}  # lease id → its set's key, while the request runs
        self._batch: list[tuple] = []
        self._senders = 0  # pipelines on the wire
        self._sending: set[asyncio.Task] = set()
        self._renewer: asyncio.Task | None = None

    async def admit(self, principal: str, quota: Quota, lease: str) -> Verdict:
        requests, tokens, leases = _keys(principal)
        args = [WINDOW_MS, quota.requests_per_minute or 0, quota.tokens_per_minute or 0, quota.max_parallel or 0,
                lease, self._lease_ttl_ms]
        answer = await self._call(self._admit, [requests, tokens, leases], args)
        allowed = answer[0] == 1
        if allowed and quota.max_parallel is not None:
            self._live[lease] = leases
            if self._renewer is None:
                self._renewer = asyncio.get_running_loop().create_task(self._renew_forever(), name="quota-leases")
        exceeded = answer[1].decode() if isinstance(answer[1], bytes) else str(answer[1] or "")
        return Verdict(allowed, exceeded, *(int(v) for v in answer[2:7]))

    async def settle(self, principal: str, quota: Quota, lease: str, tokens: int) -> None:
        _, token_key, leases = _keys(principal)
        held = self._live.pop(lease, None)
        charge = tokens if quota.tokens_per_minute is not None else 0
        if not charge and held is None:
            return
        await self._call(self._settle, [token_key, leases], [WINDOW_MS, charge, lease if held else ""])

    async def _call(self, script, keys: list[str], args: list):
        """One script call. Up to two pipelines are on the wire at once (so a request's admission
        never waits behind the previous answer's settlement); calls made while both are busy go out
        together as the next one: under load most requests share a round trip (and redis-py's
        per-call cost)."""
        future = asyncio.get_running_loop().create_future()
        self._batch.append((script, keys, args, future))
        if self._senders < 2:
            self._senders += 1
            task = asyncio.get_running_loop().create_task(self._send())
            self._sending.add(task)  # a strong reference while it runs
            task.add_done_callback(self._sending.discard)
        try:
            async with asyncio.timeout(self._timeout_s * 2):  # connect + answer, at most
                return await asyncio.shield(future)
        except TimeoutError:
            raise StoreUnavailable("TimeoutError: Redis did not answer in time") from None

    async def _send(self) -> None:
        try:
            while self._batch:
                batch, self._batch = self._batch, []
                try:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for script, keys, args, _ in batch:
                            await script(keys=keys, args=args, client=pipe)  # queued, not sent
                        answers = await pipe.execute(raise_on_error=False)
                except (RedisError, OSError, TimeoutError) as exc:
                    answers = [exc] * len(batch)
                for (_, _, _, future), answer in zip(batch, answers):
                    if future.done():
                        continue
                    if isinstance(answer, BaseException):
                        future.set_exception(StoreUnavailable(f"{type(answer).__name__}: {answer}"))
                    else:
                        future.set_result(answer)
        finally:
            self._senders -= 1

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._lease_ttl_ms / 3000)
            by_key: dict[str, list[str]] = {}
            for lease, key in self._live.items():
                by_key.setdefault(key, []).append(lease)
            for key, leases in by_key.items():  # one caller's keys per call (one hash slot)
                try:
                    await self._call(self._renew, [key], [self._lease_ttl_ms, *leases])
                except StoreUnavailable as exc:
                    log.warning("renewing %d quota leases failed: %s", len(leases), exc)

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout_s * 2):
                return bool(await self._redis.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        await self._redis.aclose()
