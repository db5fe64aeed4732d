"""Records and the interface every store implements."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol

from gateway.accounting.periods import Periods
from gateway.outcome import Outcome
from gateway.store.records import (
    ApiKey,
    BatchFile,
    BatchLine,
    BatchRecord,
    ResponseRecord,
    Team,
)

if TYPE_CHECKING:
    from gateway.store.key_cache import KeyCache


class Conflict(Exception):
    """A unique name or key is already taken."""


@dataclass(frozen=True, slots=True)
class Hold:
    """A request's hold: what `Store.reserve` takes."""

    key_id: str
    team_id: int
    amount_nanos: int
    periods: Periods
    now: float
    ttl_s: float
    request_id: str | None = None
    owner: str | None = None
    endpoint: str | None = None
    model: str | None = None

    def terms(self) -> dict[str, Any]:
        return {spec.name: getattr(self, spec.name) for spec in fields(self)}


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One request, as accounting remembers it. Writing it settles its reservation."""

    request_id: str
    created_at: str
    day: str
    week: str
    month: str
    key_id: str
    team_id: int
    endpoint: str
    model: str | None
    size: str | None
    quality: str | None
    n: int | None
    stream: bool
    status: int
    outcome: str
    cache_status: str
    text_input_tokens: int
    cached_text_input_tokens: int
    image_input_tokens: int
    cached_image_input_tokens: int
    image_output_tokens: int
    text_output_tokens: int
    images: int
    estimate_nanos: int
    cost_nanos: int
    saved_nanos: int
    latency_ms: float
    upstream_request_id: str | None
    price_version: str | None
    reservation_id: int | None
    error_code: str | None = None  # the code of the error the client was sent, if any
    batch_id: str | None = None  # a Batch API line's batch (its request_id: batch_id/custom_id)
    custom_id: str | None = None
    # A Responses API response: its id, its text model, and the two parts of its cost (the
    # text model's tokens; the image tool's), which add up to cost_nanos.
    response_id: str | None = None
    text_model: str | None = None
    text_cost_nanos: int | None = None
    image_cost_nanos: int | None = None
    # Attribution: the request's X-Gateway-Tags (a JSON object, keys sorted) and its body's
    # `user`.
    tags: str | None = None
    end_user: str | None = None
    # What upstream charges; cost_nanos is what the team is charged (times its price
    # multiplier). None: the same as cost_nanos.
    upstream_cost_nanos: int | None = None

    def __post_init__(self) -> None:
        if self.upstream_cost_nanos is None:
            object.__setattr__(self, "upstream_cost_nanos", self.cost_nanos)


def orphan_row(
    reservation_id: int,
    key_id: str,
    team_id: int,
    amount_nanos: int,
    created_at: str,
    request_id: str | None,
    endpoint: str | None,
    model: str | None,
) -> LedgerRow:
    """The ledger row of a hold whose request never settled: charged the hold, in the periods
    of the day the hold was made."""
    when = dt.datetime.fromisoformat(created_at)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    periods = Periods.at(when)
    return LedgerRow(
        request_id=request_id or f"orphan_{reservation_id}",
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        day=periods.day,
        week=periods.week,
        month=periods.month,
        key_id=key_id,
        team_id=team_id,
        endpoint=endpoint or "unknown",
        model=model,
        size=None,
        quality=None,
        n=None,
        stream=False,
        status=0,
        outcome=Outcome.ORPHANED.value,
        cache_status="bypass",
        text_input_tokens=0,
        cached_text_input_tokens=0,
        image_input_tokens=0,
        cached_image_input_tokens=0,
        image_output_tokens=0,
        text_output_tokens=0,
        images=0,
        estimate_nanos=amount_nanos,
        cost_nanos=amount_nanos,
        saved_nanos=0,
        latency_ms=0.0,
        upstream_request_id=None,
        price_version=None,
        reservation_id=reservation_id,
    )


@dataclass(frozen=True, slots=True)
class Spend:
    """A scope's budget in its current period: what is spent, what is held by requests in flight."""

    budget_nanos: int | None
    budget_period: str
    spent_nanos: int
    reserved_nanos: int

    @property
    def remaining_nanos(self) -> int | None:
        if self.budget_nanos is None:
            return None
        return max(0, self.budget_nanos - self.spent_nanos - self.reserved_nanos)


# The sums a usage report gives for each group, in order.
USAGE_COLUMNS = (
    "requests",
    "refused",
    "images",
    "text_input_tokens",
    "cached_text_input_tokens",
    "image_input_tokens",
    "cached_image_input_tokens",
    "image_output_tokens",
    "text_output_tokens",
    "cost_nanos",
    "saved_nanos",
    "upstream_cost_nanos",
)


@dataclass(frozen=True, slots=True)
class UsageFilter:
    team_id: int | None = None
    key_id: str | None = None
    model: str | None = None
    tag: tuple[str, str] | None = None  # (key, value)
    end_user: str | None = None
    since: str | None = None  # ISO 8601, inclusive
    until: str | None = None  # ISO 8601, exclusive


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A cached response: its request key, its body's content hash, and what it cost. `body` is
    the body itself when it is small enough to live in the index (`cache_inline_max_bytes`), None
    when it is a file."""

    key: str
    scope: str
    team_id: int
    key_id: str
    endpoint: str
    model: str | None
    stream: bool
    body_sha256: str
    content_type: str
    headers: dict[str, str]
    size: int
    images: int
    cost_nanos: int
    created_at: float
    expires_at: float
    last_hit_at: float = 0.0
    hits: int = 0
    body: bytes | None = field(default=None, repr=False)


# What `gateway db copy` moves, in an order that satisfies every reference.
COPIED_TABLES = (
    "teams",
    "api_keys",
    "ledger",
    "spend",
    "reservations",
    "cache_bodies",
    "cache_entries",
    "batch_files",
    "batch_lines",
    "batches",
    "responses",
    "audit",
    "ledger_tags",
)


TOTALS_SQL = [
    *(f"SELECT '{table}', COUNT(*) FROM {table}" for table in COPIED_TABLES),
    "SELECT 'ledger cost_nanos', COALESCE(SUM(cost_nanos), 0) FROM ledger",
    "SELECT 'ledger saved_nanos', COALESCE(SUM(saved_nanos), 0) FROM ledger",
    "SELECT 'spend spent_nanos', COALESCE(SUM(spent_nanos), 0) FROM spend",
]


@dataclass(frozen=True, slots=True)
class CacheStats:
    entries: int
    hits: int
    bodies: int
    bytes: int
    by_team: list[dict[str, Any]]


class CacheIndex(Protocol):
    """The response cache's index (key → body file and what to answer with). Body files are the
    cache's business; the index only names them by content hash."""

    async def get(self, key: str, now: float) -> CacheEntry | None:
        """The entry for `key`, unless it has expired."""
        ...

    async def put(self, entry: CacheEntry) -> int:
        """Store (or replace) the entry; its body is registered with it. The total size of the
        bodies entries use, now (at least: a body the entry stopped using may still count)."""
        ...

    async def put_many(self, entries: list[CacheEntry]) -> int:
        """`put` for several entries at once (at most 64), as one write."""
        ...

    async def touch(self, hits: dict[str, tuple[int, float]]) -> None:
        """Add hit counts and move last-hit times forward: {key: (hits, last_hit_at)}."""
        ...

    async def delete(self, key: str) -> None: ...
    async def delete_body(self, body_sha256: str) -> int:
        """Drop every entry that answers with this body; how many went."""
        ...

    async def delete_expired(self, now: float) -> int: ...
    async def purge(self, *, team_id: int | None, key_id: str | None) -> int:
        """Drop the entries a team's (or a key's) requests stored; all of them when both are
        None. How many went."""
        ...

    async def evict_to(self, max_bytes: int) -> int:
        """Drop least recently used entries until the bodies still used fit in `max_bytes`."""
        ...

    async def used_bytes(self) -> int:
        """The total size of the bodies entries use (each counted once)."""
        ...

    async def unused_bodies(self) -> list[str]:
        """The bodies no entry uses any more, not yet swept: their hashes, for their files to be
        removed (each is returned once)."""
        ...

    async def bodies(self) -> list[tuple[str, int]]:
        """Every body stored as a file: (sha256, size)."""
        ...

    async def inline_bodies(self) -> list[tuple[str, bytes]]:
        """Every body stored in the index itself: (sha256, body)."""
        ...

    async def stats(self) -> CacheStats: ...

    async def recent(self, team_id: int | None, limit: int, now: float) -> list[CacheEntry]:
        """The newest fresh entries (of one team, or of all), newest first, without bodies."""
        ...


class Store(Protocol):
    """What the gateway asks of its database. Every method is a coroutine; none blocks the loop."""

    @property
    def cache(self) -> CacheIndex: ...

    @property
    def keys(self) -> KeyCache:
        """Keys found by hash, kept in memory until a key or team changes."""
        ...

    async def connect(self) -> None: ...
    async def close(self) -> None: ...
    async def migrate(self) -> list[str]:
        """Apply the migrations not yet applied, in order; return the names applied now."""
        ...

    async def ping(self) -> None: ...
    async def checkpoint(self) -> None:
        """Housekeeping for the storage engine, off the serving path (may do nothing)."""
        ...

    async def create_team(self, name: str, **limits: Any) -> Team: ...
    async def get_team(self, name: str) -> Team | None: ...
    async def list_teams(self) -> list[Team]: ...
    async def update_team(self, name: str, **changes: Any) -> Team | None: ...
    async def delete_team(self, name: str) -> int | None:
        """Revoke the team's keys and mark it deleted (renamed, so the name is free again); its
        ledger rows stay. How many keys were revoked; None when there is no such team."""
        ...

    async def create_key(
        self,
        *,
        key_id: str,
        team_id: int,
        name: str | None,
        key_hash: str,
        prefix: str,
        **limits: Any,
    ) -> ApiKey: ...
    async def get_key(self, key_id: str) -> ApiKey | None: ...
    async def find_key_by_hash(self, key_hash: str) -> tuple[ApiKey, Team] | None: ...
    async def list_keys(self, team_id: int | None = None) -> list[ApiKey]: ...
    async def update_key(self, key_id: str, **changes: Any) -> ApiKey | None: ...
    async def revoke_key(self, key_id: str) -> ApiKey | None: ...
    async def rotate_key(self, key_id: str, *, key_hash: str, prefix: str) -> ApiKey | None:
        """Give a live key a new hash and prefix; None when it is revoked or unknown."""
        ...

    async def reserve(
        self,
        *,
        key_id: str,
        team_id: int,
        amount_nanos: int,
        periods: Periods,
        now: float,
        ttl_s: float,
        request_id: str | None = None,
        owner: str | None = None,
        endpoint: str | None = None,
        model: str | None = None,
    ) -> int | None:
        """Hold `amount_nanos` against the key's and the team's budgets, atomically: the id of
        the reservation, or None when either budget (spent + reserved + amount) would pass."""
        ...

    async def lookup_or_reserve(
        self, key: str, now: float, hold: Hold
    ) -> tuple[CacheEntry | None, int | None]:
        """The fresh cache entry for `key`; or, when there is none, `hold` reserved (its id,
        or None when a budget cannot hold it): a miss's lookup and hold, in one trip where
        the engine allows."""
        ...

    async def spend(self, scope: str, scope_id: str, periods: Periods, now: float) -> Spend:
        """`scope` is 'team' (scope_id the team id) or 'key'."""
        ...

    async def record(self, row: LedgerRow) -> None:
        """Write the ledger row; its reservation (by id, or by its request) is released and
        spend counted in the same statement. A second row for the same request is ignored."""
        ...

    async def record_many(self, rows: list[LedgerRow]) -> None:
        """`record` for many rows, a few hundred to a transaction (a batch's lines)."""
        ...

    # The Batch API (batch_sql.py)

    async def add_file(self, file: BatchFile, lines: Iterable[BatchLine]) -> None: ...
    async def get_file(self, file_id: str, team_id: int) -> BatchFile | None: ...
    async def list_files(
        self, team_id: int, purpose: str | None, limit: int, after: str | None
    ) -> list[BatchFile]: ...
    async def delete_file(self, file_id: str, team_id: int, now: int) -> bool: ...
    async def file_lines(self, file_id: str) -> list[BatchLine]: ...
    async def add_batch(self, batch: BatchRecord) -> None: ...
    async def get_batch(self, batch_id: str, team_id: int | None) -> BatchRecord | None: ...
    async def list_batches(
        self, team_id: int | None, limit: int, after: str | None = None
    ) -> list[BatchRecord]: ...
    async def batches_to_poll(self, before: float, limit: int) -> list[str]: ...
    async def lease_batch(self, batch_id: str, owner: str, now: float, lease_s: float) -> bool: ...
    async def update_batch(self, batch_id: str, **changes: Any) -> None: ...
    async def finish_batch(self, batch_id: str, now: int, **changes: Any) -> None: ...
    async def forget_batch(self, batch_id: str) -> None: ...
    async def drop_hold(self, reservation_id: int) -> None: ...
    async def fresh_cache_keys(self, keys: list[str], now: float) -> set[str]: ...
    async def orphaned_hold_charged(self, batch_id: str) -> bool: ...

    # The Responses API (response_sql.py)

    async def add_response(self, record: ResponseRecord) -> None: ...
    async def get_response(
        self, response_id: str, team_id: int | None
    ) -> ResponseRecord | None: ...
    async def delete_response(self, response_id: str, team_id: int, now: int) -> None: ...
    async def hand_over_hold(self, reservation_id: int, expires_at: float) -> None: ...
    async def responses_to_poll(self, before: float, limit: int) -> list[str]: ...
    async def lease_response(
        self, response_id: str, owner: str, now: float, lease_s: float
    ) -> bool: ...
    async def update_response(self, response_id: str, **changes: Any) -> None: ...

    # Budget alerts (webhook_sql.py)

    async def add_webhook(
        self, webhook_id: str, url: str, events: str | None, secret: str, created_at: str
    ) -> None: ...
    async def list_webhooks(self) -> list[tuple[Any, ...]]: ...
    async def delete_webhook(self, webhook_id: str, now: str) -> bool: ...
    async def queue_event(
        self, event_id: str, kind: str, body: str, dedupe: str, now: float
    ) -> bool: ...
    async def due_deliveries(self, now: float, limit: int) -> list[tuple[str, str]]: ...
    async def lease_delivery(
        self, event_id: str, webhook_id: str, owner: str, now: float, lease_s: float
    ) -> tuple[Any, ...] | None: ...
    async def end_attempt(
        self,
        event_id: str,
        webhook_id: str,
        *,
        status: str,
        attempts: int,
        next_at: float,
        last_status: int | None,
        last_error: str | None,
        delivered_at: float | None,
    ) -> None: ...
    async def deliveries(self, webhook_id: str, limit: int) -> list[tuple[Any, ...]]: ...

    async def holders(self) -> list[str]:
        """The owners (`host:pid:start`) of the holds now in the store."""
        ...

    async def heartbeat(self, owner: str, now: float) -> None:
        """`owner` is alive at `now` (unix seconds). Heartbeats a day old are forgotten."""
        ...

    async def upstream_cost_by_day(self, since: str, until: str) -> list[tuple[str, str, int]]: ...
    async def upstream_images_by_day(
        self, since: str, until: str
    ) -> list[tuple[str, str, int]]: ...
    async def add_audit(
        self,
        *,
        at: str,
        actor: str,
        action: str,
        target: str,
        before: str | None,
        after: str | None,
    ) -> None: ...
    async def audit_entries(
        self, limit: int, action: str | None = None, target: str | None = None
    ) -> list[tuple[Any, ...]]: ...

    async def end_console_session(self, session_id: str, until: float, now: float) -> None:
        """The console session `session_id` is signed out: refused on every replica until
        `until` (when its cookie expires anyway). Sessions ended before `now` are forgotten."""
        ...

    async def console_session_ended(self, session_id: str) -> bool: ...

    async def silent_holders(self, before: float) -> list[str]:
        """Owners of holds whose last heartbeat came before `before`; an owner that never sent
        one is not among them."""
        ...

    async def settle_orphans(self, now: float, dead_owners: Collection[str] = ()) -> int:
        """Holds whose request never settled, because they expired or their owner died, become
        ledger rows with outcome `orphaned`, charged their amount (upstream may well have made
        the image), unless the request has its row already; then the hold just goes. How many
        holds were settled."""
        ...

    async def usage(self, where: UsageFilter, group_by: str) -> list[dict[str, Any]]:
        """Ledger sums grouped by 'team', 'key', 'model', 'day', 'hour' (UTC, as
        '2026-12-02T21'), 'outcome' or 'cache' (the cache status)."""
        ...

    # Moving between stores (`gateway db copy`): whole tables, rows as they are.

    async def dump(self, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Every row of `table` (one of COPIED_TABLES): its column names and its rows."""
        ...

    async def load(self, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        """Insert rows as they are (ids included), in one transaction, without the settling a
        ledger row does when a request writes it: the spend table is copied as it is."""
        ...

    async def clear(self) -> None:
        """Delete every row of COPIED_TABLES (a copy's target, when told to overwrite)."""
        ...

    async def totals(self) -> dict[str, int]:
        """Rows per copied table, and the ledger's and the spend table's sums: what a copy
        must carry over unchanged."""
        ...
