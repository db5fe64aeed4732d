"""Rate limits (requests and images per minute) and budget refusals, for keys and teams alike.

Rate limits are sliding windows of the last 60 seconds. `RateLimiter` keeps them in this
process's memory: checking and taking happen in one synchronous step on the event loop, so
concurrent requests cannot slip past a limit together; with several processes or replicas, each
counts its own (`accounting/quota_redis.py` shares them through Redis). Budgets live in the store
(see Store.reserve), so they hold across restarts and processes.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from gateway.accounting.periods import next_reset
from gateway.errors import GatewayError
from gateway.money import nanos_to_usd
from gateway.outcome import Outcome
from gateway.store import ApiKey, Team
from gateway.store.base import Spend

WINDOW_S = 60.0


class _Window:
    """Weighted events of the last WINDOW_S seconds for one scope and kind."""

    __slots__ = ("events", "used")

    def __init__(self) -> None:
        self.events: deque[tuple[float, int]] = deque()
        self.used = 0

    def expire(self, now: float) -> None:
        while self.events and self.events[0][0] <= now - WINDOW_S:
            self.used -= self.events.popleft()[1]

    def seconds_until_room(self, now: float, needed: int, limit: int) -> float:
        """How long until `needed` more fits under `limit` (0 when it fits now)."""
        excess = self.used + needed - limit
        if excess <= 0:
            return 0.0
        for moment, weight in self.events:
            excess -= weight
            if excess <= 0:
                return max(0.0, moment + WINDOW_S - now)
        return WINDOW_S  # needed alone is over the limit: never fits; say a minute


@dataclass(frozen=True, slots=True)
class Limit:
    scope: str  # "key" or "team"
    scope_id: str
    kind: str  # "requests" or "images"
    limit: int
    weight: int


def limits_for(key: ApiKey, team: Team, images: int) -> list[Limit]:
    limits = []
    for scope, scope_id, record in (("key", key.id, key), ("team", str(team.id), team)):
        if record.rpm is not None:
            limits.append(Limit(scope, scope_id, "requests", record.rpm, 1))
        if record.ipm is not None:
            limits.append(Limit(scope, scope_id, "images", record.ipm, images))
    return limits


# What a limit stands at after a check: (the limit, how much of it is used, seconds until its
# oldest counted event leaves the window).
Standing = tuple[Limit, int, float]


class Limiter(Protocol):
    """All-or-nothing admission against several sliding-window limits."""

    async def admit(self, limits: list[Limit], request_id: str) -> dict[str, str]:
        """Count the request against every limit, or raise GatewayError 429 counting nothing.
        Returns the x-ratelimit-* headers of the tightest limit of each kind."""
        ...

    def forget_idle(self) -> None:
        """Drop what idle limits hold (called every few seconds)."""
        ...

    @property
    def problem(self) -> str | None:
        """Why limits are not what they should be right now (for /readyz), or None."""
        ...

    async def close(self) -> None: ...


class RateLimiter:
    """Sliding windows in this process's memory."""

    problem = None

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str, str], _Window] = {}

    async def admit(self, limits: list[Limit], request_id: str) -> dict[str, str]:
        return self.admit_now(limits, time.monotonic())

    def admit_now(self, limits: list[Limit], now: float) -> dict[str, str]:
        """`admit`, at `now` (monotonic seconds), in one synchronous step."""
        windows = []
        for limit in limits:
            window = self._windows.setdefault((limit.scope, limit.scope_id, limit.kind), _Window())
            window.expire(now)
            windows.append(window)
        refusals = [
            (window.seconds_until_room(now, limit.weight, limit.limit), limit)
            for limit, window in zip(limits, windows, strict=True)
            if window.used + limit.weight > limit.limit
        ]
        if refusals:
            wait, limit = max(refusals, key=lambda refusal: refusal[0])
            raise rate_limited(limit, wait, ratelimit_headers(self._standing(limits, windows, now)))
        for limit, window in zip(limits, windows, strict=True):
            window.events.append((now, limit.weight))
            window.used += limit.weight
        return ratelimit_headers(self._standing(limits, windows, now))

    async def close(self) -> None:
        pass

    def forget_idle(self) -> None:
        """Drop windows with nothing in them, so idle keys cost no memory."""
        now = time.monotonic()
        for scope, window in list(self._windows.items()):
            window.expire(now)
            if not window.events:
                del self._windows[scope]

    @staticmethod
    def _standing(limits: list[Limit], windows: list[_Window], now: float) -> list[Standing]:
        return [
            (limit, window.used, (window.events[0][0] + WINDOW_S - now) if window.events else 0.0)
            for limit, window in zip(limits, windows, strict=True)
        ]


def ratelimit_headers(standing: list[Standing]) -> dict[str, str]:
    """The x-ratelimit-* headers of the tightest limit of each kind."""
    tightest: dict[str, tuple[int, int, float]] = {}
    for limit, used, reset in standing:
        remaining = max(0, limit.limit - used)
        if limit.kind not in tightest or remaining < tightest[limit.kind][1]:
            tightest[limit.kind] = (limit.limit, remaining, reset)
    headers = {}
    for kind, (limit_value, remaining, reset) in tightest.items():
        headers[f"x-ratelimit-limit-{kind}"] = str(limit_value)
        headers[f"x-ratelimit-remaining-{kind}"] = str(remaining)
        headers[f"x-ratelimit-reset-{kind}"] = f"{max(0.0, reset):.3f}s"
    return headers


def rate_limited(limit: Limit, wait_s: float, headers: dict[str, str]) -> GatewayError:
    per = "requests" if limit.kind == "requests" else "images"
    retry_after = max(1, math.ceil(wait_s))
    return GatewayError(
        429,
        f"Rate limit reached for {limit.scope} {limit.scope_id}: {limit.limit} {per} per minute."
        f" Try again in {retry_after} s.",
        type=limit.kind,
        code="rate_limit_exceeded",
        headers={**headers, "retry-after": str(retry_after)},
        outcome=Outcome.REFUSED_RATE,
    )


_PERIOD_WORDS = {"day": "daily ", "week": "weekly ", "month": "monthly ", "total": ""}


def budget_exhausted(
    scope: str, name: str, spend: Spend, needed_nanos: int, now: dt.datetime, hint: str = ""
) -> GatewayError:
    """429 insufficient_quota, which the SDKs do not retry (x-should-retry: false). The message
    says what happened: what the request may cost, what is left and why, when it renews, and
    (`hint`) which of the request's fields would lower what it may cost."""
    assert spend.budget_nanos is not None
    left = spend.remaining_nanos or 0
    period = _PERIOD_WORDS.get(spend.budget_period, "")
    reset = next_reset(spend.budget_period, now)
    when = (
        f" The budget renews at {reset.isoformat().replace('+00:00', 'Z')}."
        if reset
        else " It does not renew: an admin can raise it."
    )
    return GatewayError(
        429,
        f"The {scope} {name!r} cannot pay for this request: it may cost up to"
        f" ${nanos_to_usd(needed_nanos)}, and ${nanos_to_usd(left)} of its {period}budget of"
        f" ${nanos_to_usd(spend.budget_nanos)} is left (${nanos_to_usd(spend.spent_nanos)} spent,"
        f" ${nanos_to_usd(spend.reserved_nanos)} held by requests in flight).{when}{hint}",
        type="insufficient_quota",
        code="insufficient_quota",
        headers={"x-should-retry": "false"},
        outcome=Outcome.REFUSED_BUDGET,
    )
