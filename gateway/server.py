"""Serving: the gateway (and, for `make run` without an upstream key, the simulator beside it)."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from aiohttp import web

from gateway.app import create_app
from gateway.settings import Settings


def install_uvloop() -> None:
    """uvloop makes the proxy's per-request overhead markedly lower; use it where it exists."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _wait_for_signal() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def serve_apps(
    apps: list[tuple[web.Application, str, int]], on_ready: str | None = None
) -> None:
    """Serve each (app, host, port) until SIGINT or SIGTERM, then shut all down in reverse."""
    runners = []
    try:
        for app, host, port in apps:
            # A client that disconnects cancels its handler, so nothing waits on its behalf (an
            # upstream that went quiet, say); cleanup runs on the way out. aiohttp's test server
            # does the same, so tests see what production does.
            runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, host, port).start()
        if on_ready:
            print(on_ready, flush=True)
        await _wait_for_signal()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


def serve(settings: Settings) -> None:
    install_uvloop()
    asyncio.run(
        serve_apps(
            [(create_app(settings), settings.host, settings.port)],
            on_ready=f"gateway listening on http://{settings.host}:{settings.port}"
            f" (upstream {settings.upstream_url})",
        )
    )
