"""The per-request context that the pipeline's stages read and fill in, in order."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from gateway.body import RequestBody
from gateway.endpoints import Endpoint
from gateway.store import ApiKey, Team


@dataclass(slots=True)
class Flow:
    """One request's way through the gateway.

    Each field is None until the stage that fills it has run: `key`/`team` after authenticate,
    `body` after read_body, `params`/`model`/`stream` after inspect, `upstream` after the
    upstream call. `cleanup` runs when the request ends, however it ends.
    """

    request: web.Request
    endpoint: Endpoint
    upstream_path: str
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    cleanup: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    key: ApiKey | None = None
    team: Team | None = None
    body: RequestBody | None = None
    params: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    stream: bool = False
    upstream: aiohttp.ClientResponse | None = None
    client_gone: bool = False
