"""The request that goes upstream on a cache miss (the leader): it shares what it gets with the
identical requests that wait on it (its followers) and stores it when it is complete.

Its life, in order: claimed (join_in_flight makes it), filled (the client's writer hands it each
stream event after the client: `started`, `event`), then `finish`, a step of the request's ending
once the result is known: publish to the followers, store in the background, release.

What holds: the leader's InFlight always ends with an outcome (`finish` runs however the request
ended), and only a complete 200 response is stored: a whole body, or a stream that reached its
completed event and ended cleanly. The leader's own client never waits for the cache. Until the
answer is stored, identical requests still join and are served what the leader published (the
reply in memory, or the stream's tee, held open for them).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from multidict import CIMultiDict

from gateway.cache.cache import ResponseCache
from gateway.cache.files import Tee, Written
from gateway.cache.inflight import Abandoned, Ending, Failed, InFlight, Reply, Stored, StreamEnd
from gateway.errors import GatewayError
from gateway.outcome import Outcome
from gateway.proxy.client import stream_cut_event
from gateway.proxy.flow import Flow
from gateway.store.base import CacheEntry

log = logging.getLogger(__name__)

# Response headers worth keeping with a cached body; the rest describe the original exchange.
KEPT_HEADERS = ("content-type", "openai-version")


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    found = CIMultiDict(headers)  # header names are case-insensitive
    return {name: value for name in KEPT_HEADERS if (value := found.get(name)) is not None}


class Leader:
    """A Lead (flow.py): the tap of the client's writer, finished by the request's ending."""

    def __init__(self, cache: ResponseCache, key: str, inflight: InFlight | None):
        self.cache = cache
        self.key = key
        self.inflight = inflight  # None when twins may not join (a no-cache request)
        self.tee: Tee | None = None
        self._tee_failed = False

    # Filled: a 200 stream's events go to the tee (for the cache and the followers).

    async def started(self, headers: dict[str, str]) -> None:
        try:
            self.tee = await self.cache.files.new_tee()
        except OSError:
            log.exception("cannot tee a stream into the cache; it is relayed uncached")
            return
        if self.inflight is not None:
            self.inflight.attach_tee(self.tee, kept_headers(headers))

    async def event(self, raw: bytes | bytearray) -> None:
        if self.tee is None or self._tee_failed:
            return
        try:
            await self.tee.append(raw)
        except OSError:
            # The client's own stream goes on; the cache and the followers lose it (followers
            # end with a stream_cut error after the whole events they already have).
            log.exception("teeing a stream into the cache failed; it is relayed uncached")
            self._tee_failed = True
            if self.inflight is not None:
                reason = "the gateway could not share it (its cache copy failed)"
                self.inflight.end(StreamEnd(Outcome.STREAM_CUT, stream_cut_event(reason), 0, 0))
            return
        if self.inflight is not None:
            self.inflight.appended(bytes(raw))

    # Finished: publish, store, release.

    async def finish(self, flow: Flow, error: BaseException | None) -> None:
        """However the request ended (`error`, or None): followers have an outcome; a complete
        answer is handed to the cache's store, and until it is in, new twins still join; then
        (or at once, with nothing to store) the InFlight closes and the tee is released."""
        published = self._published(flow, error)
        if self.inflight is not None and published is not None:
            self.inflight.end(published)
        body = await self._body_to_store(flow, error)
        if body is None:
            await self._close(None)
            return
        stored = self.cache.put(body, self._entry_maker(flow, body))
        if self.tee is None:  # nothing to wait on once it is stored: no task of its own
            stored.add_done_callback(self._settle_when_stored)
        else:
            flow.services.tasks.spawn(f"cache-store {self.key[:12]}", self._close_when(stored))

    def _published(self, flow: Flow, error: BaseException | None) -> Ending | None:
        """What the followers get now (None: nothing until the answer is stored)."""
        result, answer = flow.result, flow.answer
        if error is not None:
            if isinstance(error, GatewayError) and error.type == "upstream_error":
                return Failed(error)
            return Abandoned()
        body = flow.response_body
        if body is not None:
            if body.spooled:  # too large to hold for followers: they are served once stored
                return None if self._complete(flow, error) else Abandoned()
            reply_headers = kept_headers(flow.upstream.headers if flow.upstream else {})
            data = body.bytes_in_memory()
            return Reply(result.status, reply_headers, data, answer.images, result.cost_nanos)
        if answer.status:  # a stream
            trailer = answer.trailer
            return StreamEnd(result.outcome, trailer, answer.images, result.cost_nanos)
        return Abandoned()

    def _complete(self, flow: Flow, error: BaseException | None) -> bool:
        result = flow.result
        return (
            error is None
            and result.status == 200
            and result.outcome is Outcome.OK
            and not self._tee_failed
        )

    async def _body_to_store(
        self, flow: Flow, error: BaseException | None
    ) -> bytes | Written | None:
        """The complete answer as the cache takes it, or None (not complete, or not readable)."""
        if not self._complete(flow, error):
            return None
        body = flow.response_body
        if body is None:
            return None if self.tee is None else await self.tee.finish()
        if body.path is None:
            return body.bytes_in_memory()
        try:
            return await self.cache.files.copy_file(body.path)
        except OSError:
            log.exception("could not copy a response into the cache")
            return None

    def _entry_maker(self, flow: Flow, body: bytes | Written) -> Callable[[Written], CacheEntry]:
        """The cache entry for the body once it has its name."""
        assert flow.caller is not None and flow.upstream is not None and flow.cache is not None
        settings = self.cache.settings
        carries_urls = isinstance(body, bytes) and b'"url"' in body
        ttl = min(settings.cache_ttl_s, settings.cache_url_ttl_s if carries_urls else 1e18)
        key, scope, caller, upstream = self.key, flow.cache.scope, flow.caller, flow.upstream
        endpoint, model, stream = flow.endpoint.name, flow.model, flow.stream
        images, cost_nanos = flow.answer.images, flow.result.cost_nanos

        def entry(written: Written) -> CacheEntry:
            now = time.time()
            return CacheEntry(
                key=key,
                scope=scope,
                team_id=caller.team.id,
                key_id=caller.key.id,
                endpoint=endpoint,
                model=model,
                stream=stream,
                body_sha256=written.sha256,
                content_type=upstream.content_type,
                headers=kept_headers(upstream.headers),
                size=written.size,
                images=images,
                cost_nanos=cost_nanos,
                created_at=now,
                expires_at=now + ttl,
            )

        return entry

    async def _close_when(self, stored: asyncio.Future[CacheEntry | None]) -> None:
        entry: CacheEntry | None = None
        try:
            entry = await stored
        finally:
            await self._close(entry)

    def _settle_when_stored(self, stored: asyncio.Future[CacheEntry | None]) -> None:
        self._settle(None if stored.cancelled() else stored.result())

    def _settle(self, stored: CacheEntry | None) -> None:
        """Followers still waiting are served from `stored` (or go on alone); new twins no
        longer join."""
        inflight = self.inflight
        if inflight is not None:
            inflight.end(Stored(stored) if stored is not None else Abandoned())
            self.cache.in_flight.remove(inflight, stored)

    async def _close(self, stored: CacheEntry | None) -> None:
        """`_settle`, then the tee closes once its readers are done."""
        self._settle(stored)
        if self.tee is not None:
            await self.tee.release()
