"""The quota store shared by every replica: one Redis, one atomic Lua script per call.

The script charges a replica's finished answers' tokens, reads the caller's two windows and the
in-flight slots every replica holds, decides whether a request may be admitted, reserves a lease of
the requests window and records how many slots this replica holds now — all under Redis's
one-script-at-a-time execution, with Redis's own clock (`TIME`), so N replicas together never pass
the requests limit (leases.py decides how much to ask for). A replica's hold on slots lapses unless
renewed, so a dead replica's slots come back. Every call touches one caller's keys, which share a
hash tag (`{…}`).
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..auth.credentials import Quota
from .leases import HOLD_TTL_MS, Ask, Grant
from .store import WINDOW_MS, StoreUnavailable

log = logging.getLogger("conch.gateway.limits")

RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local rpm, tpm, maxpar = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local holder, hold_ttl = ARGV[5], tonumber(ARGV[6])
local admitting, want_requests = ARGV[7] == '1', tonumber(ARGV[8])
local want_slots, needed_slots, charge = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
if charge > 0 then
  redis.call('INCRBY', KEYS[2], charge)
  if redis.call('PTTL', KEYS[2]) < 0 then redis.call('PEXPIRE', KEYS[2], window) end
end
local function counter(key)
  local ttl = redis.call('PTTL', key)
  if ttl == -1 then redis.call('DEL', key) end
  if ttl < 0 then return 0, window end
  return tonumber(redis.call('GET', key) or '0'), ttl
end
local req, req_ttl = counter(KEYS[1])
local tok, tok_ttl = counter(KEYS[2])
local held = 0
if maxpar > 0 then
  for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do redis.call('HDEL', KEYS[4], gone) end
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  local others = 0
  local holds = redis.call('HGETALL', KEYS[4])
  for i = 1, #holds, 2 do
    if holds[i] ~= holder then others = others + tonumber(holds[i + 1]) end
  end
  held = math.max(0, math.min(want_slots, maxpar - others))
end
local exceeded = ''
if admitting then
  if rpm > 0 and req >= rpm then exceeded = 'requests'
  elseif tpm > 0 and tok >= tpm then exceeded = 'tokens'
  elseif maxpar > 0 and held < needed_slots then exceeded = 'parallel' end
end
if maxpar > 0 then
  -- a refused admission holds what runs, no spare; running requests keep their slots in any case
  if exceeded ~= '' then held = needed_slots - 1
  elseif not admitting then held = math.max(held, needed_slots) end
  if held > 0 then
    redis.call('HSET', KEYS[4], holder, held)
    redis.call('ZADD', KEYS[3], now + hold_ttl, holder)
    redis.call('PEXPIRE', KEYS[3], hold_ttl)
    redis.call('PEXPIRE', KEYS[4], hold_ttl)
  else
    redis.call('HDEL', KEYS[4], holder)
    redis.call('ZREM', KEYS[3], holder)
  end
end
local granted = 0
if exceeded == '' and rpm > 0 and want_requests > 0 then
  granted = math.min(want_requests, rpm - req)
  req = redis.call('INCRBY', KEYS[1], granted)
  if req == granted then redis.call('PEXPIRE', KEYS[1], window); req_ttl = window end
end
return {granted, exceeded, now, req, req_ttl, tok, tok_ttl, held}
"""


def _keys(principal: str) -> list[str]:
    tag = f"conch:quota:{{{principal}}}"
    return [f"{tag}:requests", f"{tag}:tokens", f"{tag}:holders", f"{tag}:slots"]


class RedisQuotaStore:
    def __init__(self, url: str, *, timeout_s: float = 0.25, hold_ttl_ms: int = HOLD_TTL_MS):
        # No retries inside the client: a slow or absent Redis must cost one timeout, then the
        # fallback decides (quotas.Quotas).
        self._redis = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                           retry=Retry(NoBackoff(), 0), health_check_interval=0)
        self._timeout_s = timeout_s
        self._hold_ttl_ms = hold_ttl_ms
        self._reserve = self._redis.register_script(RESERVE)
        self._batch: list[tuple] = []
        self._senders = 0  # pipelines on the wire
        self._sending: set[asyncio.Task] = set()

    async def reserve(self, principal: str, quota: Quota, holder: str, ask: Ask) -> Grant:
        args = [WINDOW_MS, quota.requests_per_minute or 0, quota.tokens_per_minute or 0, quota.max_parallel or 0,
                holder, self._hold_ttl_ms, int(ask.admitting), ask.requests, ask.slots, ask.needed_slots, ask.tokens]
        answer = await self._call(self._reserve, _keys(principal), args)
        exceeded = answer[1].decode() if isinstance(answer[1], bytes) else str(answer[1] or "")
        return Grant(int(answer[0]), exceeded, *(int(v) for v in answer[2:8]))

    async def _call(self, script, keys: list[str], args: list):
        """One script call. Up to two pipelines are on the wire at once (so an admission never waits
        behind a background charge); calls made while both are busy go out together as the next
        one: many callers' calls share a round trip (and redis-py's per-call cost)."""
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

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout_s * 2):
                return bool(await self._redis.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()
