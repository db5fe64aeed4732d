"""Rate limits shared by every process and replica, through Redis (`GATEWAY_REDIS_URL`).

What holds: one Lua script checks every limit of a request (key and team, requests and images)
and counts it in all of them, or in none, atomically on the Redis server, with the server's own
clock; so N replicas together admit exactly what one would. Each limit is a sorted set of the
events of the last 60 s (member `weight:request id`, scored by milliseconds) beside a counter of
their total weight, so a check costs O(log n) plus the events that just left the window.

When Redis cannot be reached (redis_link.py: each call bounded, a breaker), requests keep
flowing: limits are counted by this process alone (`GATEWAY_REDIS_LIMITS_ON_FAILURE=local`, the
default) or not at all (`open`), until the link's probe finds Redis again; `gateway_redis_up`
says 0 and `/readyz` says why.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.accounting.quota import (
    WINDOW_S,
    Limit,
    RateLimiter,
    Standing,
    rate_limited,
    ratelimit_headers,
)
from gateway.replicas.redis_link import RedisLink, RedisUnavailable

KEY_PREFIX = "gateway:rl:"

# KEYS: per limit, its sorted set then its counter. ARGV: window ms, member, then per limit its
# limit and weight. Returns {refused limit (1-based, 0: admitted), ms until it has room,
# {used per limit}, {ms until each limit's oldest event leaves}}.
ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local member = ARGV[2]
local n = #KEYS / 2
local used, oldest = {}, {}
local refused, wait = 0, 0
local function weight_of(m) return tonumber(string.match(m, '^(%d+):')) end
for i = 1, n do
  local events, total = KEYS[2 * i - 1], KEYS[2 * i]
  local limit, weight = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  local gone = redis.call('ZRANGEBYSCORE', events, '-inf', now - window)
  if #gone > 0 then
    local w = 0
    for _, m in ipairs(gone) do w = w + weight_of(m) end
    redis.call('ZREMRANGEBYSCORE', events, '-inf', now - window)
    redis.call('DECRBY', total, w)
  end
  used[i] = tonumber(redis.call('GET', total) or '0')
  local first = redis.call('ZRANGE', events, 0, 0, 'WITHSCORES')
  oldest[i] = first[2] and tonumber(first[2]) or -1
  if used[i] + weight > limit then
    local excess, until_room = used[i] + weight - limit, window
    local all = redis.call('ZRANGE', events, 0, -1, 'WITHSCORES')
    for j = 1, #all, 2 do
      excess = excess - weight_of(all[j])
      if excess <= 0 then until_room = tonumber(all[j + 1]) + window - now; break end
    end
    if refused == 0 or until_room > wait then refused, wait = i, until_room end
  end
end
local resets = {}
for i = 1, n do
  if refused == 0 then
    local weight = tonumber(ARGV[2 + 2 * i])
    redis.call('ZADD', KEYS[2 * i - 1], now, weight .. ':' .. member)
    redis.call('INCRBY', KEYS[2 * i], weight)
    redis.call('PEXPIRE', KEYS[2 * i - 1], window + 1000)
    redis.call('PEXPIRE', KEYS[2 * i], window + 1000)
    used[i] = used[i] + weight
    if oldest[i] < 0 then oldest[i] = now end
  end
  resets[i] = oldest[i] >= 0 and (oldest[i] + window - now) or 0
end
return {refused, wait, used, resets}
"""


class RedisRateLimiter:
    def __init__(self, link: RedisLink, *, on_failure: str = "local") -> None:
        """`on_failure`: `local` (count in this process) or `open` (count nothing) while Redis
        cannot be reached (the link's breaker is open)."""
        self.link = link
        self.on_failure = on_failure
        self._admit = link.redis.register_script(ADMIT)
        self._local = RateLimiter()

    @property
    def problem(self) -> str | None:
        if self.link.problem is None:
            return None
        return f"{self.link.problem}: rate limits " + (
            "counted per process" if self.on_failure == "local" else "not enforced"
        )

    async def admit(self, limits: list[Limit], request_id: str) -> dict[str, str]:
        keys = []
        args: list[Any] = [int(WINDOW_S * 1000), request_id]
        for limit in limits:
            name = f"{KEY_PREFIX}{limit.scope}:{limit.scope_id}:{limit.kind}"
            keys += [name, name + ":total"]
            args += [limit.limit, limit.weight]
        try:
            refused, wait_ms, used, resets_ms = await self.link.call(
                lambda: self._admit(keys=keys, args=args)
            )
        except RedisUnavailable:
            return self._fallback(limits)
        standing: list[Standing] = [
            (limit, int(u), int(r) / 1000)
            for limit, u, r in zip(limits, used, resets_ms, strict=True)
        ]
        if refused:
            raise rate_limited(
                limits[int(refused) - 1], int(wait_ms) / 1000, ratelimit_headers(standing)
            )
        return ratelimit_headers(standing)

    def _fallback(self, limits: list[Limit]) -> dict[str, str]:
        if self.on_failure == "open":
            return {}
        return self._local.admit_now(limits, time.monotonic())

    def forget_idle(self) -> None:
        self._local.forget_idle()  # Redis expires its own

    async def close(self) -> None:
        """The link is the services' to close."""
