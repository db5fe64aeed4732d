"""Work that outlives its request is tracked until it ends, and its failure never goes unseen
by asyncio ("exception was never retrieved")."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from gateway.background import spawn
from gateway.state import DETACHED


async def test_a_spawned_task_is_tracked_until_it_ends_and_its_error_retrieved() -> None:
    app = web.Application()
    app[DETACHED] = set()
    release = asyncio.Event()

    async def work() -> str:
        await release.wait()
        return "done"

    async def fails() -> Any:
        raise RuntimeError("nobody waits for me")

    task, failing = spawn(app, work()), spawn(app, fails())
    assert app[DETACHED] == {task, failing}
    await asyncio.wait([failing])
    await asyncio.sleep(0)  # its done callback runs next
    assert app[DETACHED] == {task}  # the failed one has left the set
    assert failing.done() and isinstance(failing.exception(), RuntimeError)
    release.set()
    assert await task == "done"
    await asyncio.sleep(0)
    assert app[DETACHED] == set()
