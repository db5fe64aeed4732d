"""Settling a batch that has ended: one ledger row per input line, the cache filled with its
answers, the output merged with the cache's answers, the hold released.

What holds: one process settles a batch at a time (it holds the batch's lease); every input line
gets one row, `request_id` `<batch id>/<custom_id>`, so a second settlement (a replica that took
over, a restart) writes nothing twice; the rows go in before the hold is released, so the budget
counts the batch throughout (twice for a moment, never not at all); a batch whose hold was
charged as an orphan (it outlived the hold's lifetime unsettled) charges no line again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import json
import logging
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.accounting.chargeback import charged
from gateway.accounting.periods import Periods
from gateway.batch.results import LineCharge, LineResult, Source, line_charge, read_results
from gateway.batch.upstream_api import UpstreamBatches
from gateway.cache.files import Written
from gateway.money import NANOS_PER_USD
from gateway.outcome import CacheStatus, Outcome
from gateway.runtime.services import Services
from gateway.store.base import CacheEntry, LedgerRow
from gateway.store.records import BatchFile, BatchLine, BatchRecord, Team

log = logging.getLogger(__name__)

CREATING = "creating"  # recorded, not yet (or not known to be) created upstream
ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
LEASE_S = 300.0  # long enough to settle 50,000 lines; a dead holder's batch waits this long
ROWS_AT_ONCE = 1000  # lines turned into ledger rows and written at a time
CACHE_WINDOW = 16  # answers queued for the cache at once while filling it


@dataclass
class _Results:
    """Each custom_id's result (the first file that has it wins), and the files they lie in."""

    by_id: dict[str, LineResult] = field(default_factory=dict)
    files: dict[Source, Path] = field(default_factory=dict)

    def take(self, path: Path, source: Source) -> None:
        self.files[source] = path
        for result in read_results(path, source):
            self.by_id.setdefault(result.custom_id, result)


async def settle_batch(services: Services, batch_id: str, owner: str) -> bool:
    """Settle the batch if it has ended upstream and this attempt of `owner` (a process) gets
    its lease; whether it is settled now (by this call). Each attempt leases under a name of
    its own, so two attempts in one process exclude each other as two replicas do."""
    store = services.store
    owner = f"{owner}:{secrets.token_hex(4)}"
    if not await store.lease_batch(batch_id, owner, time.time(), LEASE_S):
        return False
    try:
        return await _settle_leased(services, batch_id)
    except BaseException:
        # Let another try at once (settling again writes nothing twice).
        with contextlib.suppress(Exception):
            await store.update_batch(batch_id, lease_owner=None)
        raise


async def _settle_leased(services: Services, batch_id: str) -> bool:
    store = services.store
    batch = await store.get_batch(batch_id, None)
    if batch is None or batch.settled_at is not None or batch.status == CREATING:
        return False  # settled; or not (known to be) upstream: its hold stands
    api = UpstreamBatches(services.upstream)
    upstream: dict[str, Any] | None = None
    if batch.upstream_id is not None:
        upstream = await api.batch(batch.upstream_id)
        status = str(upstream.get("status"))
        ended = status in ENDED
        await store.update_batch(
            batch_id,
            status=status,
            upstream=json.dumps(upstream),
            polled_at=time.time(),
            # Held only while settling: a batch in flight is no replica's (any may ask after it).
            **({} if ended else {"lease_owner": None}),
        )
        if not ended:
            return False
    status = "completed" if upstream is None else str(upstream["status"])
    if await store.orphaned_hold_charged(batch_id):
        log.error(
            "batch %s ended after its hold was charged as orphaned: its lines are not charged"
            " again", batch_id,
        )  # fmt: skip
        await store.finish_batch(batch_id, int(time.time()), status=status)
        services.metrics.batches.labels(status).inc()
        return True
    spool = services.settings.spool_dir
    await asyncio.to_thread(spool.mkdir, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=spool, prefix="batch-") as directory:
        work = _Settlement(services, api, batch, Path(directory), upstream or {}, status)
        await work.run()
    return True


class _Settlement:
    def __init__(
        self,
        services: Services,
        api: UpstreamBatches,
        batch: BatchRecord,
        directory: Path,
        upstream: dict[str, Any],
        status: str,
    ) -> None:
        self.services, self.api, self.batch = services, api, batch
        self.directory, self.upstream, self.status = directory, upstream, status
        self.results = _Results()
        self.team: Team | None = None  # charged at its price multiplier (chargeback.py)

    async def run(self) -> None:
        """The rows go in ROWS_AT_ONCE lines at a time (each chunk's answers then fill the
        cache), so memory stays flat however many lines the batch has; the metrics count the
        lines once the batch is marked settled."""
        batch, store = self.batch, self.services.store
        lines = await store.file_lines(batch.input_file_id)
        key = await store.get_key(batch.key_id)
        self.team = await store.get_team(key.team_name) if key is not None else None
        await self._read_results()
        tally = _Tally()
        for start in range(0, len(lines), ROWS_AT_ONCE):
            chunk = lines[start : start + ROWS_AT_ONCE]
            rows, charges = self._rows(chunk)
            await store.record_many(rows)
            tally.add(rows)
            if batch.cache_write:
                await self._fill_cache(chunk, charges)
        output_id, error_id = await self._output_files(lines)
        succeeded = sum(1 for r in self.results.by_id.values() if r.succeeded)
        await store.finish_batch(
            batch.id,
            int(time.time()),
            status=self.status,
            output_file_id=output_id,
            error_file_id=error_id,
            completed_lines=succeeded,
            failed_lines=len(lines) - succeeded,
            charged_nanos=tally.charged,
            saved_nanos=tally.saved,
        )
        await self._count(tally)
        log.info(
            "batch %s settled (%s): %d lines, %d succeeded, charged $%s, saved $%s",
            batch.id, self.status, len(lines), succeeded, tally.charged / NANOS_PER_USD,
            tally.saved / NANOS_PER_USD,
        )  # fmt: skip

    async def _read_results(self) -> None:
        wanted = [
            (self.upstream.get("output_file_id"), Source.OUTPUT),
            (self.upstream.get("error_file_id"), Source.ERRORS),
            (self.batch.cached_file_id, Source.CACHED),
        ]
        for file_id, source in wanted:
            if not isinstance(file_id, str):
                continue
            path = self.directory / f"{source.name.lower()}.jsonl"
            await self.api.download(file_id, path)
            await asyncio.to_thread(self.results.take, path, source)

    def _rows(self, lines: list[BatchLine]) -> tuple[list[LedgerRow], list[LineCharge]]:
        batch, table = self.batch, self.services.prices.table
        now = dt.datetime.now(dt.UTC)
        periods = Periods.at(now)
        created = now.isoformat(timespec="milliseconds")
        rows, charges = [], []
        for line in lines:
            result = self.results.by_id.get(line.custom_id)
            charge = line_charge(table, line, result)
            charges.append(charge)
            cached = result is not None and result.source is Source.CACHED
            usage = result.usage if result is not None and not cached else None
            rows.append(
                LedgerRow(
                    request_id=f"{batch.id}/{line.custom_id}",
                    created_at=created,
                    day=periods.day,
                    week=periods.week,
                    month=periods.month,
                    key_id=batch.key_id,
                    team_id=batch.team_id,
                    endpoint=batch.endpoint.rsplit("/", 1)[-1],
                    model=line.model,
                    size=line.size,
                    quality=line.quality,
                    n=None,
                    stream=False,
                    status=result.status if result is not None else 0,
                    outcome=charge.outcome.value,
                    cache_status=_cache_status(batch, line, cached).value,
                    text_input_tokens=usage.text_input if usage else 0,
                    cached_text_input_tokens=usage.cached_text_input if usage else 0,
                    image_input_tokens=usage.image_input if usage else 0,
                    cached_image_input_tokens=usage.cached_image_input if usage else 0,
                    image_output_tokens=usage.image_output if usage else 0,
                    text_output_tokens=usage.text_output if usage else 0,
                    images=result.images if result is not None else 0,
                    estimate_nanos=line.estimate_nanos,
                    cost_nanos=charged(self.team, charge.cost_nanos),
                    upstream_cost_nanos=charge.cost_nanos,
                    saved_nanos=result.saved_nanos if cached and result is not None else 0,
                    latency_ms=0.0,
                    upstream_request_id=result.request_id if result and not cached else None,
                    price_version=table.version,
                    reservation_id=None,  # the batch's hold goes when every row is in
                    error_code=charge.error_code,
                    batch_id=batch.id,
                    custom_id=line.custom_id,
                )
            )
        return rows, charges

    async def _fill_cache(self, lines: list[BatchLine], charges: list[LineCharge]) -> None:
        """Every line upstream answered well goes into the cache under its online key, a few
        at a time (each is read again from its file: no answer is kept in memory for long)."""
        cache = self.services.cache
        path = self.results.files.get(Source.OUTPUT)
        if path is None:
            return
        pending: list[asyncio.Future[CacheEntry | None]] = []
        for line, charge in zip(lines, charges, strict=True):
            result = self.results.by_id.get(line.custom_id)
            if line.cache_key is None or result is None or result.source is not Source.OUTPUT:
                continue
            if not result.succeeded or charge.outcome is not Outcome.OK:
                continue
            body = await asyncio.to_thread(_answer_body, path, result)
            if body is None:
                continue
            pending.append(cache.put(body, self._entry_maker(line, result, charge, body)))
            if len(pending) >= CACHE_WINDOW:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)

    def _entry_maker(
        self, line: BatchLine, result: LineResult, charge: LineCharge, body: bytes
    ) -> Callable[[Written], CacheEntry]:
        settings, batch = self.services.settings, self.batch
        carries_urls = b'"url"' in body
        ttl = min(settings.cache_ttl_s, settings.cache_url_ttl_s if carries_urls else 1e18)
        assert line.cache_key is not None
        key = line.cache_key

        def entry(written: Written) -> CacheEntry:
            now = time.time()
            return CacheEntry(
                key=key,
                scope=_scope_of_key(settings.cache_scope, batch),
                team_id=batch.team_id,
                key_id=batch.key_id,
                endpoint=batch.endpoint.rsplit("/", 1)[-1],
                model=line.model,
                stream=False,
                body_sha256=written.sha256,
                content_type="application/json",
                headers={},
                size=written.size,
                images=result.images,
                cost_nanos=charge.cost_nanos,
                created_at=now,
                expires_at=now + ttl,
            )

        return entry

    async def _output_files(self, lines: list[BatchLine]) -> tuple[str | None, str | None]:
        """The ids the client downloads: upstream's output and error files, or, when the cache
        answered some lines, the output merged with them in input order (uploaded upstream, so
        every replica serves it). Each is recorded as the team's."""
        batch, results = self.batch, self.results
        output_id = self.upstream.get("output_file_id")
        error_id = self.upstream.get("error_file_id")
        if Source.CACHED in results.files:
            merged = self.directory / "merged.jsonl"
            written = await asyncio.to_thread(_merge, merged, lines, results)
            uploaded = await self.api.upload(merged, f"{batch.id}_output.jsonl", "user_data")
            output_id = str(uploaded["id"])
            await self._own(output_id, "batch_output", f"{batch.id}_output.jsonl", written)
        elif isinstance(output_id, str):
            size = await _size(results.files.get(Source.OUTPUT))
            await self._own(output_id, "batch_output", f"{batch.id}_output.jsonl", size)
        if isinstance(error_id, str):
            size = await _size(results.files.get(Source.ERRORS))
            await self._own(error_id, "batch_output", f"{batch.id}_error.jsonl", size)
        return (
            output_id if isinstance(output_id, str) else None,
            error_id if isinstance(error_id, str) else None,
        )

    async def _own(self, file_id: str, purpose: str, filename: str, size: int) -> None:
        batch = self.batch
        record = BatchFile(
            file_id, batch.team_id, batch.key_id, purpose, filename, size, int(time.time())
        )
        await self.services.store.add_file(record, [])

    async def _count(self, tally: _Tally) -> None:
        """The metrics count the lines like requests: outcomes, images, cost and savings."""
        metrics = self.services.metrics
        key = await self.services.store.get_key(self.batch.key_id)
        team = key.team_name if key is not None else ""
        by_key = (self.batch.key_id,) if metrics.key_labels else ()
        metrics.batches.labels(self.status).inc()
        for (outcome, cache), count in tally.lines.items():
            metrics.batch_lines.labels(outcome, cache).inc(count)
            metrics.outcomes.labels(outcome).inc(count)
        for (endpoint, model, cache), images in tally.images.items():
            metrics.images.labels(endpoint, model, cache).inc(images)
        for model, (cost, saved) in tally.money.items():
            if cost:
                metrics.cost.labels(team, model, *by_key).inc(cost / NANOS_PER_USD)
            if saved:
                metrics.saved.labels(team, model, *by_key).inc(saved / NANOS_PER_USD)


@dataclass
class _Tally:
    """What a batch's rows add up to, for its record and the metrics."""

    charged: int = 0
    saved: int = 0
    lines: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    images: collections.Counter[tuple[str, str, str]] = field(default_factory=collections.Counter)
    money: dict[str, tuple[int, int]] = field(default_factory=dict)

    def add(self, rows: list[LedgerRow]) -> None:
        for row in rows:
            model = row.model or ""
            self.charged += row.cost_nanos
            self.saved += row.saved_nanos
            self.lines[row.outcome, row.cache_status] += 1
            if row.images:
                self.images[row.endpoint, model, row.cache_status] += row.images
            cost, saved = self.money.get(model, (0, 0))
            self.money[model] = (cost + row.cost_nanos, saved + row.saved_nanos)


def _cache_status(batch: BatchRecord, line: BatchLine, cached: bool) -> CacheStatus:
    if cached:
        return CacheStatus.HIT
    return CacheStatus.MISS if batch.cache_write and line.cache_key else CacheStatus.BYPASS


def _scope_of_key(scope: str, batch: BatchRecord) -> str:
    if scope == "global":
        return "global"
    return f"key:{batch.key_id}" if scope == "key" else f"team:{batch.team_id}"


def _answer_body(path: Path, result: LineResult) -> bytes | None:
    """The line's response body as an online request's answer (blocking)."""
    with path.open("rb") as file:
        file.seek(result.offset)
        raw = file.read(result.length)
    try:
        body = json.loads(raw)["response"]["body"]
    except (ValueError, KeyError, TypeError):
        return None
    return json.dumps(body, separators=(",", ":")).encode() if isinstance(body, dict) else None


def _merge(into: Path, lines: list[BatchLine], results: _Results) -> int:
    """The successful lines of every source, in input order (blocking); the size written."""
    handles = {source: path.open("rb") for source, path in results.files.items()}
    written = 0
    try:
        with into.open("wb") as out:
            for line in lines:
                result = results.by_id.get(line.custom_id)
                if result is None or not result.succeeded:
                    continue
                source = handles[result.source]
                source.seek(result.offset)
                raw = source.read(result.length)
                raw = raw if raw.endswith(b"\n") else raw + b"\n"
                out.write(raw)
                written += len(raw)
    finally:
        for handle in handles.values():
            handle.close()
    return written


async def _size(path: Path | None) -> int:
    if path is None:
        return 0
    with contextlib.suppress(OSError):
        return (await asyncio.to_thread(path.stat)).st_size
    return 0
