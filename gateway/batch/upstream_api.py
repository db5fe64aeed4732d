"""Upstream's Files and Batches APIs, called with the operator's key (never the client's): upload
a file from disk, create, read and cancel a batch, and read a file's content to disk.

What holds: a file goes up and comes down in chunks, never whole in memory; an upstream refusal
becomes a GatewayError with upstream's status and message (its key never in it); a JSON answer is
read to at most MAX_JSON_BYTES.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from gateway.errors import GatewayError
from gateway.proxy.upstream import Upstream

MAX_JSON_BYTES = 4 * 1024 * 1024  # a file or batch object, or an error
CHUNK = 256 * 1024
_UNSAFE_NAME = re.compile(r'["\r\n\\]')


class UpstreamBatches:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def upload(self, path: Path, filename: str, purpose: str) -> dict[str, Any]:
        """POST files: the file at `path`, streamed from disk as one multipart part."""
        boundary = secrets.token_hex(16)
        name = _UNSAFE_NAME.sub("_", filename) or "batch.jsonl"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n{purpose}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/jsonl\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        size = await asyncio.to_thread(lambda: path.stat().st_size)

        async def body() -> AsyncIterator[bytes]:
            yield head
            with path.open("rb") as file:
                while chunk := await asyncio.to_thread(file.read, CHUNK):
                    yield chunk
            yield tail

        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        return await self._json("POST", "files", headers, body(), len(head) + size + len(tail))

    async def create_batch(
        self, input_file_id: str, endpoint: str, metadata: dict[str, str] | None
    ) -> dict[str, Any]:
        document: dict[str, Any] = {
            "input_file_id": input_file_id,
            "endpoint": endpoint,
            "completion_window": "24h",
        }
        if metadata:
            document["metadata"] = metadata
        data = json.dumps(document).encode()
        headers = {"Content-Type": "application/json"}
        return await self._json("POST", "batches", headers, data, len(data))

    async def batch(self, upstream_id: str) -> dict[str, Any]:
        return await self._json("GET", f"batches/{upstream_id}", {}, None, 0)

    async def cancel(self, upstream_id: str) -> dict[str, Any]:
        return await self._json("POST", f"batches/{upstream_id}/cancel", {}, None, 0)

    async def delete_file(self, file_id: str) -> None:
        await self._json("DELETE", f"files/{file_id}", {}, None, 0)

    async def download(self, file_id: str, into: Path) -> int:
        """The file's content, written to `into` in chunks; its size."""
        response = await self.upstream.send("GET", f"files/{file_id}/content", {}, None, 0)
        try:
            if response.status != 200:
                raise await _refusal(response)
            size = 0
            with into.open("wb") as file:
                async for chunk in response.content.iter_chunked(CHUNK):
                    await asyncio.to_thread(file.write, chunk)
                    size += len(chunk)
            return size
        finally:
            response.release()

    async def content(self, file_id: str) -> aiohttp.ClientResponse:
        """The file's content as upstream answers it (status and all): the caller relays it and
        releases it."""
        return await self.upstream.send("GET", f"files/{file_id}/content", {}, None, 0)

    async def _json(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes | AsyncIterator[bytes] | None,
        length: int,
    ) -> dict[str, Any]:
        response = await self.upstream.send(method, path, headers, body, length)
        try:
            if response.status >= 400:
                raise await _refusal(response)
            data = await _bounded(response)
            try:
                document = json.loads(data)
            except ValueError:
                document = None
            if not isinstance(document, dict):
                raise GatewayError(
                    502, "Upstream answered with something that is not a JSON object.",
                    type="upstream_error",
                )  # fmt: skip
            return document
        finally:
            response.release()


async def _bounded(response: aiohttp.ClientResponse) -> bytes:
    data = bytearray()
    async for chunk in response.content.iter_chunked(CHUNK):
        data += chunk
        if len(data) > MAX_JSON_BYTES:
            raise GatewayError(502, "Upstream's answer is too large.", type="upstream_error")
    return bytes(data)


async def _refusal(response: aiohttp.ClientResponse) -> GatewayError:
    """Upstream's error, passed on in OpenAI's shape with upstream's status."""
    try:
        error = json.loads(await _bounded(response)).get("error") or {}
    except (ValueError, AttributeError, GatewayError):
        error = {}
    message = error.get("message") if isinstance(error, dict) else None
    return GatewayError(
        response.status,
        str(message or f"Upstream refused the request ({response.status})."),
        type=str(error.get("type") or "upstream_error"),
        code=error.get("code") if isinstance(error.get("code"), str) else None,
        param=error.get("param") if isinstance(error.get("param"), str) else None,
    )
