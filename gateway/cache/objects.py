"""Cache bodies in an S3-compatible object store (`GATEWAY_CACHE_STORE=s3://bucket/prefix`), shared
by every replica: AWS S3, MinIO, Cloudflare R2, GCS's XML API (`GATEWAY_CACHE_S3_ENDPOINT_URL`).
Credentials come the usual AWS ways (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, an
instance role).

What holds: an object is named by the SHA-256 of its content (`<prefix>/bodies/<sha256>`) and
written whole in one PUT carrying that SHA-256 as its checksum, so the store refuses a body that
is not what its name says; there are no partial objects. A body is served only when the object's
size is the one indexed, streamed in chunks (never loaded whole), and the store checks the
checksum as it is read; `verify` reads every body and rehashes it. Bodies larger than the inline
limit go here; smaller ones stay in the index, as always.

An object store that does not answer within `timeout_s` (connect and each read, no retry) makes
`open` raise ObjectStoreUnavailable: the cache takes it as a miss, keeps the entry, and `problem`
says why (`/readyz` lists it under `degraded`) until a call passes again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

CHUNK = 256 * 1024


class ObjectStoreUnavailable(Exception):
    """The object store did not answer in time, or answered with a failure of its own."""


def parse_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` → (bucket, "some/prefix/")."""
    rest = url.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {url!r}: use s3://bucket/prefix")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


@dataclass
class ObjectBody:
    """An open object: its chunks, once; close it when done (served or not)."""

    response: Any

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self.response["Body"].iter_chunks(CHUNK):
            yield chunk

    async def close(self) -> None:
        self.response["Body"].close()


class ObjectBodies:
    def __init__(
        self, url: str, *, endpoint_url: str | None, region: str, timeout_s: float = 5.0
    ) -> None:
        self.bucket, self.prefix = parse_url(url)
        self.endpoint_url = endpoint_url
        self.region = region
        self.timeout_s = timeout_s
        self.problem: str | None = None
        self._client: Any = None
        self._exit: contextlib.AsyncExitStack | None = None

    def key(self, sha256: str) -> str:
        return f"{self.prefix}bodies/{sha256}"

    async def start(self) -> None:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session  # loads only when an object store is used

        bounded = AioConfig(
            connect_timeout=self.timeout_s,
            read_timeout=self.timeout_s,
            retries={"max_attempts": 1, "mode": "standard"},
        )
        self._exit = contextlib.AsyncExitStack()
        self._client = await self._exit.enter_async_context(
            get_session().create_client(
                "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=bounded
            )
        )

    async def close(self) -> None:
        if self._exit is not None:
            await self._exit.aclose()
            self._exit = self._client = None

    async def put(self, sha256: str, data: bytes) -> None:
        """Store `data` under its hash; the store checks the checksum, so a body that is not what
        its name says is refused."""
        await self._client.put_object(
            Bucket=self.bucket,
            Key=self.key(sha256),
            Body=data,
            ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode(),
        )

    async def open(self, sha256: str, size: int) -> ObjectBody | None:
        """The object, open for reading; None when it is missing or not `size` bytes."""
        from botocore.exceptions import ClientError

        try:
            response = await asyncio.wait_for(
                self._client.get_object(
                    Bucket=self.bucket, Key=self.key(sha256), ChecksumMode="ENABLED"
                ),
                self.timeout_s * 2,  # connecting, then the answer's head
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                self.problem = None
                return None
            raise self._unavailable(exc) from exc
        except Exception as exc:  # connection refused, a timeout, DNS: the store is away
            raise self._unavailable(exc) from exc
        self.problem = None
        body = ObjectBody(response)
        if response.get("ContentLength") != size:
            await body.close()
            return None
        return body

    def _unavailable(self, exc: BaseException) -> ObjectStoreUnavailable:
        self.problem = f"object store s3://{self.bucket} unreachable ({type(exc).__name__})"
        return ObjectStoreUnavailable(self.problem)

    async def is_intact(self, sha256: str, size: int) -> bool:
        """Read the whole object and rehash it."""
        body = await self.open(sha256, size)
        if body is None:
            return False
        digest = hashlib.sha256()
        try:
            async for chunk in body.chunks():
                digest.update(chunk)
        finally:
            await body.close()
        return digest.hexdigest() == sha256

    async def remove(self, hashes: Iterable[str]) -> None:
        keys = [{"Key": self.key(sha256)} for sha256 in hashes]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes up to 1,000
            await self._client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": keys[start : start + 1000], "Quiet": True}
            )

    async def stray(self, known: set[str], min_age_s: float) -> list[str]:
        """Bodies no index entry names, older than `min_age_s` (younger ones may be in the
        middle of being stored by a running gateway)."""
        oldest = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=min_age_s)
        found = []
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}bodies/"):
            for item in page.get("Contents", []):
                sha256 = item["Key"].rsplit("/", 1)[-1]
                if sha256 not in known and item["LastModified"] < oldest:
                    found.append(sha256)
        return found
