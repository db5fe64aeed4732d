"""The request that goes upstream on a cache miss: it stores what it gets and shares it with the
identical requests that wait on it (its followers).

What holds: the leader's InFlight always ends with an outcome (`settle`, a step of the
request's ending, sees to that, whatever happens), and only a complete 200 response is stored:
a whole body, or a stream that reached its completed event and ended cleanly. The leader's own
client never waits for the cache: a whole body is stored in the background, a stream after its
last byte went out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from multidict import CIMultiDict

from gateway.background import spawn
from gateway.body import SpooledBody
from gateway.cache.batch import PendingStore
from gateway.cache.cache import ResponseCache
from gateway.cache.files import Tee, Written
from gateway.cache.inflight import Abandoned, Failed, InFlight, Reply, Stored, StreamEnd
from gateway.client import stream_cut_event
from gateway.errors import GatewayError
from gateway.flow import Flow
from gateway.outcome import Outcome
from gateway.store.base import CacheEntry

log = logging.getLogger(__name__)

# Response headers worth keeping with a cached body; the rest describe the original exchange.
KEPT_HEADERS = ("content-type", "openai-version")


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    found = CIMultiDict(headers)  # header names are case-insensitive
    return {name: value for name in KEPT_HEADERS if (value := found.get(name)) is not None}


class Leader:
    """A StreamSink and a BodySink (client.py): the relay hands it what it hands the client."""

    def __init__(self, cache: ResponseCache, flow: Flow, key: str, inflight: InFlight | None):
        self.cache = cache
        self.flow = flow
        self.key = key
        self.inflight = inflight  # None when twins may not join (a no-cache request)
        self.tee: Tee | None = None
        self._storing = False  # a background store ends the InFlight's registration itself
        self._tee_failed = False

    # A stream: each event goes to the tee (for the cache and for followers) after the client.

    async def started(self, headers: dict[str, str]) -> None:
        if self.flow.result.status != 200:
            return
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

    async def ended(self, trailer: bytes) -> None:
        """Followers finish with `trailer`; a complete stream is stored."""
        flow = self.flow
        if self.inflight is not None:
            self.inflight.end(
                StreamEnd(flow.result.outcome, trailer, flow.bill.images, flow.bill.cost_nanos)
            )
        complete = (
            flow.result.outcome is Outcome.OK and flow.result.status == 200 and not self._tee_failed
        )
        if complete and self.tee is not None:
            # Not awaited: the stream's last chunk goes out when the request ends. Until it is
            # stored, identical requests still join and replay the tee, held open for them.
            tee = self.tee
            tee.retain()
            self._storing = self.inflight is not None
            stored = self._store(await tee.finish())
            stored.add_done_callback(lambda _: spawn(flow.request.app, tee.release()))

    # A whole body: shared from memory at once, stored in the background.

    async def body(self, headers: dict[str, str], body: SpooledBody) -> None:
        flow = self.flow
        complete = flow.result.status == 200 and flow.result.outcome is Outcome.OK
        path = body.path
        if path is not None:
            # Too large to hold in memory for followers: they are served once it is stored.
            if complete:
                try:
                    await self._store(await self.cache.files.copy_file(path))
                except OSError:
                    log.exception("could not copy a response into the cache")
            return
        data = body.bytes_in_memory()
        if self.inflight is not None:
            reply = Reply(
                flow.result.status,
                kept_headers(headers),
                data,
                flow.bill.images,
                flow.bill.cost_nanos,
            )
            self.inflight.end(reply)
        if complete:
            # Until it is stored, identical requests still join this one: the reply is here.
            self._storing = self.inflight is not None
            self._store(data, carries_urls=b'"url"' in data)

    def _store(
        self, body: bytes | Written, carries_urls: bool = False
    ) -> asyncio.Future[CacheEntry | None]:
        """Hand the body to the cache's batched store; the future says when it is stored (or
        not). A failure there is logged and costs only the cache entry: the response itself has
        gone, or goes, out whole."""
        flow = self.flow
        assert flow.caller is not None and flow.upstream is not None
        assert flow.cache is not None
        settings = self.cache.settings
        key, scope, team_id, key_id = (
            self.key,
            flow.cache.scope,
            flow.caller.team.id,
            flow.caller.key.id,
        )
        endpoint, model, stream = flow.endpoint.name, flow.model, flow.stream
        content_type = flow.upstream.content_type
        headers = kept_headers(flow.upstream.headers)
        images, cost_nanos = flow.bill.images, flow.bill.cost_nanos
        ttl = min(settings.cache_ttl_s, settings.cache_url_ttl_s if carries_urls else 1e18)

        def entry(written: Written) -> CacheEntry:
            now = time.time()
            return CacheEntry(
                key=key,
                scope=scope,
                team_id=team_id,
                key_id=key_id,
                endpoint=endpoint,
                model=model,
                stream=stream,
                body_sha256=written.sha256,
                content_type=content_type,
                headers=headers,
                size=written.size,
                images=images,
                cost_nanos=cost_nanos,
                created_at=now,
                expires_at=now + ttl,
            )

        inflight, still_joinable = self.inflight, self._storing
        finished: asyncio.Future[CacheEntry | None] = asyncio.get_running_loop().create_future()

        def done(stored: CacheEntry | None) -> None:
            if inflight is not None:
                if stored is not None:
                    inflight.end(Stored(stored))
                if still_joinable:
                    self.cache.in_flight.remove(inflight, stored)
            finished.set_result(stored)

        self.cache.submit(PendingStore(body, entry, done))
        return finished

    async def settle(self, error: BaseException | None) -> None:
        """However the leader ended (`error`, or None): followers have an outcome, new twins no
        longer join, and the tee closes once its readers are done. Run by the request's ending."""
        inflight = self.inflight
        if inflight is not None:
            if isinstance(error, GatewayError) and error.type == "upstream_error":
                inflight.end(Failed(error))
            else:
                inflight.end(Abandoned())
            if not self._storing:
                outcome = inflight.outcome
                stored = outcome.entry if isinstance(outcome, Stored) else None
                self.cache.in_flight.remove(inflight, stored)
        if self.tee is not None:
            await self.tee.release()
