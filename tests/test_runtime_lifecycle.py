"""What the app opens, one cleanup context per resource: opened in order, closed in reverse, and
a resource that fails to open closes only those opened before it (the pitfall aiohttp's docs warn
about). No server: aiohttp's AppRunner runs the start-up and clean-up without listening."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.runtime import lifecycle
from gateway.runtime.state import SERVICES
from gateway.settings import Settings


def test_resources_open_in_the_order_that_reads_as_the_apps_life() -> None:
    app = web.Application()
    lifecycle.add_to(app)
    assert [ctx.__name__ for ctx in app.cleanup_ctx] == [
        "store", "redis", "books", "cache", "upstream", "replicas", "background_tasks",
        "housekeeping", "alerts",
    ]  # fmt: skip


async def test_a_resource_that_fails_to_open_closes_those_opened_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    services = app[SERVICES]
    closed: list[str] = []

    async def upstream_fails() -> None:
        raise OSError("no sockets left")

    async def cache_closes() -> None:
        closed.append("cache")

    async def store_closes() -> None:
        closed.append("store")

    real_closes = (services.cache.close, services.store.close)
    monkeypatch.setattr(services.upstream, "start", upstream_fails)
    monkeypatch.setattr(services.cache, "close", cache_closes)
    monkeypatch.setattr(services.store, "close", store_closes)
    runner = web.AppRunner(app)
    with pytest.raises(OSError, match="no sockets left"):
        await runner.setup()
    assert closed == []
    await runner.cleanup()  # as web.run_app does when its start fails
    assert closed == ["cache", "store"]
    for close in real_closes:  # nothing of this test outlives it (its store's thread)
        await close()


async def test_background_work_is_waited_for_then_everything_closes(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, shutdown_grace_s=1))
    runner = web.AppRunner(app)
    await runner.setup()
    services = app[SERVICES]
    finished: list[str] = []

    async def store_something() -> None:
        finished.append("stored")

    services.tasks.spawn("cache-store test", store_something())
    housekeeping = [t for t in services.tasks._running if t.get_name() == "housekeeping"]
    assert len(housekeeping) == 1
    await runner.cleanup()
    assert finished == ["stored"] and housekeeping[0].cancelled()
    assert services.tasks.pending() == []
