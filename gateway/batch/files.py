"""`/v1/files`: a team's batch input files (checked line by line before anything goes upstream)
and the output files of its batches, in OpenAI's shapes.

What holds: an upload is spooled to disk in chunks (never whole in memory) up to
`GATEWAY_BATCH_MAX_FILE_BYTES`, every line checked as the online endpoint checks a request, and
forwarded upstream only when all pass; a file belongs to the team whose key uploaded it (or whose
batch made it), and any other team's key gets the same 404 as for an id that does not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.accounting.policy import check, read_policy
from gateway.batch.caller import Caller, caller_of, page_size
from gateway.batch.lines import Allow, CheckedFile, KeyOf, check_file
from gateway.batch.upstream_api import UpstreamBatches
from gateway.cache.key import KeyRequest, json_cache_key
from gateway.cache.policy import caching_allowed, scope_of
from gateway.edge.params import ImageParams
from gateway.errors import GatewayError, invalid_request, not_found, request_too_large
from gateway.runtime.services import Services
from gateway.runtime.state import SERVICES
from gateway.store.records import BatchFile, BatchLine

CHUNK = 256 * 1024
MAX_FIELD = 1024  # a text field (purpose) is short


def file_object(file: BatchFile) -> dict[str, Any]:
    return {
        "id": file.id,
        "object": "file",
        "bytes": file.bytes,
        "created_at": file.created_at,
        "filename": file.filename,
        "purpose": file.purpose,
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }


async def upload(request: web.Request) -> web.StreamResponse:
    """`POST /v1/files` (multipart `purpose=batch` and `file`)."""
    services = request.app[SERVICES]
    caller = await caller_of(request)
    spool = services.settings.spool_dir
    await asyncio.to_thread(spool.mkdir, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=spool, prefix="upload-") as directory:
        path = Path(directory) / "input.jsonl"
        purpose, filename = await _read_upload(
            request, path, services.settings.batch_max_file_bytes
        )
        if purpose != "batch":
            raise invalid_request(
                f"This gateway takes files for the Batch API only (purpose 'batch'), not"
                f" {purpose!r}.",
                code="unsupported_file_purpose",
                param="purpose",
            )
        table = services.prices.table
        key_of, allow = _key_of(services, caller), _allow(caller)
        checked = await asyncio.to_thread(check_file, path, table, key_of, allow)
        uploaded = await UpstreamBatches(services.upstream).upload(path, filename, purpose)
        size = await asyncio.to_thread(lambda: path.stat().st_size)
    record = BatchFile(
        id=str(uploaded["id"]),
        team_id=caller.team.id,
        key_id=caller.key.id,
        purpose=purpose,
        filename=filename,
        bytes=size,
        created_at=int(time.time()),
        endpoint=checked.url,
        lines=len(checked.lines),
        estimate_nanos=checked.estimate_nanos,
    )
    await services.store.add_file(record, _lines(record.id, checked))
    return web.json_response(file_object(record))


async def _read_upload(request: web.Request, path: Path, limit: int) -> tuple[str, str]:
    """The upload's `purpose` and file name, its `file` written to `path`."""
    if not request.content_type.startswith("multipart/"):
        raise invalid_request(
            "Upload a file as multipart/form-data with fields 'purpose' and 'file'.",
            code="invalid_value",
        )
    try:
        purpose, filename = await _read_parts(await request.multipart(), path, limit)
    except (ValueError, AssertionError, RuntimeError, KeyError, HttpProcessingError) as exc:
        # aiohttp's parse errors: a malformed part, a bad part header
        raise invalid_request(
            f"The multipart body cannot be read ({type(exc).__name__}).", code="invalid_multipart"
        ) from None
    for name, value in (("file", filename), ("purpose", purpose)):
        if value is None:
            raise invalid_request(
                f"Missing required parameter: '{name}'.",
                code="missing_required_parameter",
                param=name,
            )
    assert purpose is not None and filename is not None
    return purpose.strip(), filename


async def _read_parts(
    reader: MultipartReader, path: Path, limit: int
) -> tuple[str | None, str | None]:
    purpose: str | None = None
    filename: str | None = None
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "purpose":
            purpose = (await part.read(decode=True))[:MAX_FIELD].decode("utf-8", "replace")
        elif part.name == "file" and filename is None:
            filename = (part.filename or "batch.jsonl")[:255]
            await _spool_part(part, path, limit)
        else:
            await part.release()
    return purpose, filename


async def _spool_part(part: BodyPartReader, path: Path, limit: int) -> None:
    size = 0
    file = await asyncio.to_thread(path.open, "wb")
    try:
        while chunk := await part.read_chunk(CHUNK):
            size += len(chunk)
            if size > limit:
                raise request_too_large(limit)
            await asyncio.to_thread(file.write, chunk)
    finally:
        await asyncio.to_thread(file.close)


def _key_of(services: Services, caller: Caller) -> KeyOf:
    """Each line's cache key, as an identical online request by this caller would have it."""
    settings = services.settings
    if not caching_allowed(settings, caller.team, set()):
        return lambda endpoint, model, body: None
    scope = scope_of(settings, caller.key, caller.team)
    ignored = settings.cache_ignored_fields

    def key_of(endpoint: str, model: str, body: dict[str, Any]) -> str:
        request = KeyRequest(scope=scope, endpoint=endpoint, query="", model=model, stream=False)
        return json_cache_key(request, body, ignored)

    return key_of


def _allow(caller: Caller) -> Allow:
    """Each line against the caller's key's and team's policy (accounting/policy.py)."""
    policies = [
        (whose, read_policy(text))
        for whose, text in (("key", caller.key.policy), ("team", caller.team.policy))
        if text
    ]

    def allow(model: str, params: ImageParams) -> None:
        for whose, policy in policies:
            check(policy, whose, [(model, "model")], params, params.n)

    return allow


def _lines(file_id: str, checked: CheckedFile) -> Iterator[BatchLine]:
    return (
        BatchLine(
            file_id,
            line.number,
            line.custom_id,
            line.model,
            line.size,
            line.quality,
            line.cache_key,
            line.estimate_nanos,
        )
        for line in checked.lines
    )


async def owned_file(request: web.Request) -> tuple[Caller, BatchFile]:
    caller = await caller_of(request)
    file_id = request.match_info["file_id"]
    found = await request.app[SERVICES].store.get_file(file_id, caller.team.id)
    if found is None:
        raise not_found("file", file_id)
    return caller, found


async def list_files(request: web.Request) -> web.StreamResponse:
    """`GET /v1/files`: the caller's team's files, newest first."""
    caller = await caller_of(request)
    limit = page_size(request, default=10000, most=10000)
    purpose = request.query.get("purpose")
    files = await request.app[SERVICES].store.list_files(
        caller.team.id, purpose, limit + 1, request.query.get("after")
    )
    data = [file_object(file) for file in files[:limit]]
    return web.json_response(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": len(files) > limit,
        }
    )


async def retrieve(request: web.Request) -> web.StreamResponse:
    _, file = await owned_file(request)
    return web.json_response(file_object(file))


async def delete(request: web.Request) -> web.StreamResponse:
    """`DELETE /v1/files/{id}`: upstream's copy too (one already gone there is fine)."""
    caller, file = await owned_file(request)
    services = request.app[SERVICES]
    with contextlib.suppress(GatewayError):
        await UpstreamBatches(services.upstream).delete_file(file.id)
    await services.store.delete_file(file.id, caller.team.id, int(time.time()))
    return web.json_response({"id": file.id, "object": "file", "deleted": True})


async def content(request: web.Request) -> web.StreamResponse:
    """`GET /v1/files/{id}/content`: relayed from upstream as it arrives."""
    _, file = await owned_file(request)
    answer = await UpstreamBatches(request.app[SERVICES].upstream).content(file.id)
    try:
        if answer.status != 200:
            raise GatewayError(
                502 if answer.status >= 500 else answer.status,
                f"Upstream could not give the file's content ({answer.status}).",
                type="upstream_error",
            )
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        if answer.content_length is not None:
            response.content_length = answer.content_length
        await response.prepare(request)
        async for chunk in answer.content.iter_chunked(CHUNK):
            await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        answer.release()


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/files", upload)
    app.router.add_get("/v1/files", list_files)
    app.router.add_get("/v1/files/{file_id}", retrieve)
    app.router.add_delete("/v1/files/{file_id}", delete)
    app.router.add_get("/v1/files/{file_id}/content", content)
