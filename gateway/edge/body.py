"""Request bodies, read once: spooled, parsed and summarised in a single pass.

Bytes arrive from the client in chunks. Each chunk is counted against the limit, kept in memory
until the body passes `spool_threshold_bytes` and then written to a temporary file, and, for
multipart bodies, fed to a streaming parser that records every part (text fields whole; file
parts as name, file name, content type, size, SHA-256 and their first bytes). Nothing reads the
body a second time: the upstream call sends the spooled bytes exactly as they arrived, and later
stages (cost estimate, cache key) use the summary.

Once the spool is on disk, batches of chunks are parsed and written on a worker thread, so the
event loop never waits on the disk or on hashing a large upload. Memory stays bounded by the
threshold plus one batch, whatever the upload's size.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import PayloadEncodingError
from aiohttp.web_protocol import RequestPayloadError
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from gateway.edge.params import check_depth, nested_too_deeply
from gateway.errors import GatewayError, invalid_request, request_too_large

FILE_HEAD_BYTES = 64 * 1024  # enough for the dimensions of any PNG, JPEG, WebP or GIF
TEXT_FIELD_LIMIT = 1024 * 1024  # prompts are at most 32k characters; longer fields count as files
BATCH_BYTES = 1024 * 1024  # how much is handed to the worker thread at once
READ_CHUNK = 256 * 1024


@dataclass(slots=True)
class FilePart:
    """A multipart part that carries a file; `head` is its first bytes, for image headers."""

    field: str
    filename: str | None
    content_type: str | None
    size: int = 0
    sha256: str = ""
    head: bytes = b""


@dataclass
class SpooledBody:
    """A body read whole (a request's, or a response's before it is relayed). Held in memory, or
    in a temporary file past the threshold."""

    content_type: str
    media_type: str
    size: int = 0
    json: Any = None
    fields: list[tuple[str, str]] = field(default_factory=list)
    files: list[FilePart] = field(default_factory=list)
    _memory: bytearray = field(default_factory=bytearray)
    _path: Path | None = None

    @property
    def spooled(self) -> bool:
        return self._path is not None

    @property
    def path(self) -> Path | None:
        """The temporary file holding the body, when it is spooled."""
        return self._path

    def payload(self) -> bytes | AsyncIterator[bytes]:
        """The body as it arrived, for the upstream request."""
        if self._path is None:
            return bytes(self._memory)
        return _read_file_chunks(self._path)

    def buffer(self) -> bytearray:
        """The body held in memory, without a copy (not to be changed while in use)."""
        if self._path is not None:
            raise RuntimeError("body is spooled to disk")
        return self._memory

    def replace(self, data: bytes) -> None:
        """Hold `data` instead (a body held in memory, rewritten before it is relayed)."""
        if self._path is not None:
            raise RuntimeError("body is spooled to disk")
        self._memory = bytearray(data)
        self.size = len(data)

    def bytes_in_memory(self) -> bytes:
        if self._path is not None:
            raise RuntimeError("body is spooled to disk")
        return bytes(self._memory)

    async def aclose(self) -> None:
        """Remove the temporary file, if any. Safe to call more than once."""
        path, self._path = self._path, None
        if path is not None:
            await asyncio.to_thread(_unlink_quietly, path)


def _unlink_quietly(path: Path) -> None:
    path.unlink(missing_ok=True)


async def _read_file_chunks(path: Path) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(open, path, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, READ_CHUNK):
            yield chunk
    finally:
        await asyncio.to_thread(handle.close)


class _MultipartSummary:
    """Callbacks for python-multipart's streaming parser that fill a SpooledBody's summary."""

    def __init__(self, body: SpooledBody, boundary: bytes) -> None:
        self.body = body
        self.finished = False
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._file: FilePart | None = None
        self._hash: Any = None
        self._head = bytearray()
        self._field_name = ""
        self._text = bytearray()
        self.parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_val,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    def write(self, data: bytes) -> None:
        self.parser.write(data)

    def _part_begin(self) -> None:
        self._headers = {}
        self._file = None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_val(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.decode("latin-1").lower()] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        content_type = self._headers.get("content-type")
        # A part is a file when it says so (a file name) or carries a non-text type; plain and
        # text/* parts are fields (HTTP clients label string fields text/plain).
        is_text = content_type is None or content_type.lower().startswith(b"text/")
        if filename is not None or not is_text:
            self._file = FilePart(
                field=name,
                filename=filename.decode("utf-8", "replace") if filename is not None else None,
                content_type=content_type.decode("latin-1") if content_type else None,
            )
            self._hash = hashlib.sha256()
            self._head = bytearray()
        else:
            self._field_name = name
            self._text = bytearray()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = memoryview(data)[start:end]
        if self._file is None and len(self._text) + len(chunk) > TEXT_FIELD_LIMIT:
            self._text_to_file()
        if self._file is not None:
            self._file.size += len(chunk)
            self._hash.update(chunk)
            if len(self._head) < FILE_HEAD_BYTES:
                self._head += chunk[: FILE_HEAD_BYTES - len(self._head)]
        else:
            self._text += chunk

    def _text_to_file(self) -> None:
        """A text field too long to keep whole is summarised like a file (size and SHA-256), so
        that no two different values ever look alike."""
        self._file = FilePart(field=self._field_name, filename=None, content_type="text/plain")
        self._file.size = len(self._text)
        self._hash = hashlib.sha256(self._text)
        self._head = bytearray(self._text[:FILE_HEAD_BYTES])
        self._text = bytearray()

    def _part_end(self) -> None:
        if self._file is not None:
            self._file.sha256 = self._hash.hexdigest()
            self._file.head = bytes(self._head)
            self.body.files.append(self._file)
            self._file = None
        else:
            # surrogateescape: two different byte strings never decode to the same text.
            text = self._text.decode("utf-8", "surrogateescape")
            self.body.fields.append((self._field_name, text))

    def _end(self) -> None:
        self.finished = True


class _Spool:
    """Memory until the threshold, then a temporary file; multipart parsing rides along."""

    def __init__(self, body: SpooledBody, threshold: int, spool_dir: Path) -> None:
        self.body = body
        self.threshold = threshold
        self.spool_dir = spool_dir
        self.multipart: _MultipartSummary | None = None
        self._handle: Any = None
        self._batch = bytearray()

    async def feed(self, chunk: bytes) -> None:
        if self._handle is None:
            self.body._memory += chunk
            if self.multipart is not None:
                self.multipart.write(chunk)
            if len(self.body._memory) > self.threshold:
                await self._move_to_disk()
            return
        self._batch += chunk
        if len(self._batch) >= BATCH_BYTES:
            await self._flush_batch()

    async def finish(self) -> None:
        if self._handle is not None:
            await self._flush_batch()
            await asyncio.to_thread(self._handle.close)
            self._handle = None

    async def abort(self) -> None:
        if self._handle is not None:
            await asyncio.to_thread(self._handle.close)
            self._handle = None

    async def _move_to_disk(self) -> None:
        def create() -> tuple[Any, Path]:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix="body-", dir=self.spool_dir)
            handle = os.fdopen(fd, "wb")
            handle.write(self.body._memory)
            return handle, Path(name)

        # The path is recorded before anything else can fail, so aclose() always removes it.
        self._handle, self.body._path = await asyncio.to_thread(create)
        self.body._memory = bytearray()

    async def _flush_batch(self) -> None:
        batch, self._batch = bytes(self._batch), bytearray()
        await asyncio.to_thread(self._write_batch, batch)

    def _write_batch(self, batch: bytes) -> None:
        if self.multipart is not None:
            self.multipart.write(batch)
        self._handle.write(batch)


class TooLarge(Exception):
    """A body passed the limit it was read within."""


async def spool_chunks(
    chunks: AsyncIterator[bytes],
    *,
    content_type: str,
    threshold: int,
    spool_dir: Path,
    limit: int | None = None,
) -> SpooledBody:
    """Read `chunks` whole into a SpooledBody (a response body, say); `aclose()` it after.
    Raises TooLarge (leaving nothing behind) once more than `limit` bytes have come."""
    body = SpooledBody(content_type=content_type, media_type=media_type_of(content_type))
    spool = _Spool(body, threshold, spool_dir)
    try:
        async for chunk in chunks:
            body.size += len(chunk)
            if limit is not None and body.size > limit:
                raise TooLarge(f"more than {limit} bytes")
            await spool.feed(chunk)
        await spool.finish()
    except BaseException:
        await spool.abort()
        await body.aclose()
        raise
    return body


def media_type_of(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


@dataclass(frozen=True, slots=True)
class Pace:
    """How fast a body must arrive: no pause longer than `idle_s`, and, once reading has taken
    `idle_s`, at least `min_bytes_per_s` on average (0: no minimum)."""

    idle_s: float
    min_bytes_per_s: int


async def paced(chunks: AsyncIterator[bytes], pace: Pace) -> AsyncIterator[bytes]:
    """`chunks`, or a 408 as soon as they arrive too slowly (a client trickling its body)."""
    started = time.monotonic()
    received = 0
    iterator = aiter(chunks)
    while True:
        try:
            async with asyncio.timeout(pace.idle_s):
                chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise body_too_slow(f"nothing arrived for {pace.idle_s:g} s") from None
        received += len(chunk)
        elapsed = time.monotonic() - started
        if elapsed > pace.idle_s and received < pace.min_bytes_per_s * elapsed:
            raise body_too_slow(
                f"it arrived at {received / elapsed:.0f} bytes/s, under the"
                f" {pace.min_bytes_per_s} bytes/s this gateway asks for"
            )
        yield chunk


def body_too_slow(why: str) -> GatewayError:
    return GatewayError(408, f"The request body arrived too slowly: {why}.", code="request_timeout")


async def read_body(
    request: web.Request,
    *,
    limit: int,
    spool_threshold: int,
    spool_dir: Path,
    pace: Pace | None = None,
) -> SpooledBody:
    """Read the whole body of `request` once, within `limit` bytes (see read_stream), at
    `pace` or faster."""
    chunks = request.content.iter_chunked(READ_CHUNK)
    return await read_stream(
        chunks if pace is None else paced(chunks, pace),
        content_type=request.headers.get("Content-Type", ""),
        declared_size=request.content_length,
        limit=limit,
        spool_threshold=spool_threshold,
        spool_dir=spool_dir,
    )


async def read_stream(
    chunks: AsyncIterator[bytes],
    *,
    content_type: str,
    declared_size: int | None,
    limit: int,
    spool_threshold: int,
    spool_dir: Path,
) -> SpooledBody:
    """Read a request body from `chunks` once, within `limit` bytes.

    On return the body is complete and, when multipart, parsed. Raises GatewayError 413 past the
    limit and 400 for malformed JSON or multipart. The caller owns the result and must
    `aclose()` it; on an exception nothing is left behind.
    """
    body = SpooledBody(content_type=content_type, media_type=media_type_of(content_type))
    if declared_size is not None and declared_size > limit:
        raise request_too_large(limit)

    if body.media_type == "application/json":
        spool_threshold = limit  # JSON is parsed whole, so it is never spooled
    spool = _Spool(body, spool_threshold, spool_dir)
    if body.media_type == "multipart/form-data":
        spool.multipart = _MultipartSummary(body, _boundary(content_type))
    try:
        async for chunk in chunks:
            body.size += len(chunk)
            if body.size > limit:
                raise request_too_large(limit)
            await spool.feed(chunk)
        await spool.finish()
    except MultipartParseError as exc:
        await spool.abort()
        await body.aclose()
        raise invalid_request(f"Malformed multipart body: {exc}", code="invalid_multipart") from exc
    except (PayloadEncodingError, RequestPayloadError) as exc:  # aiohttp could not read it
        await spool.abort()
        await body.aclose()
        if isinstance(exc, PayloadEncodingError) or isinstance(exc.__cause__, PayloadEncodingError):
            raise invalid_request(
                "The body is not valid for its Content-Encoding (gzip or deflate data was"
                " expected).",
                code="invalid_content_encoding",
            ) from exc
        raise invalid_request(
            f"The request body could not be read: {exc}", code="invalid_body"
        ) from exc
    except BaseException:
        await spool.abort()
        await body.aclose()
        raise

    if spool.multipart is not None and not spool.multipart.finished:
        await body.aclose()
        raise invalid_request(
            "Malformed multipart body: it ends before its closing boundary.",
            code="invalid_multipart",
        )
    if body.media_type == "application/json":
        body.json = await _parse_json(body)
    return body


def _boundary(content_type: str) -> bytes:
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise invalid_request(
            "A multipart/form-data body needs a boundary in its Content-Type header.",
            code="invalid_multipart",
        )
    return boundary


async def _parse_json(body: SpooledBody) -> Any:
    raw = body.bytes_in_memory()
    try:
        # Large JSON (data URLs of images) is parsed on a thread so the loop keeps serving.
        if len(raw) > 256 * 1024:
            document = await asyncio.to_thread(json.loads, raw)
        else:
            document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_request(
            f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from exc
    except RecursionError as exc:
        raise nested_too_deeply() from exc
    check_depth(document)
    return document
