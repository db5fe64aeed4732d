"""Serving: the gateway (and, for `make run` without an upstream key, the simulator beside it)."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket

from aiohttp import web

from gateway.app import create_app
from gateway.edge.guard import Guard, GuardedSite, default_connection_cap
from gateway.errors import CannotStart
from gateway.replicas.changes import PRICES
from gateway.runtime.pidfile import pid_file, read_pid
from gateway.runtime.state import ENDING_S, SERVICES
from gateway.settings import Settings

log = logging.getLogger(__name__)


def reload_prices(apps: list[web.Application]) -> None:
    """SIGHUP: every app with a price book reads its file again (a bad file changes nothing),
    and tells the other replicas to do the same."""
    for app in apps:
        if SERVICES in app and app[SERVICES].reload_prices():
            app[SERVICES].changes.publish(PRICES)


async def _wait_for_signal(apps: list[web.Application]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload_prices, apps)
    await stop.wait()


async def start_app(
    app: web.Application, host: str, port: int, *, grace_s: float, reuse_port: bool = False
) -> web.AppRunner:
    """Serve `app` on host:port until the returned runner is cleaned up. A gateway app (one with
    settings) is served behind the edge guard: connection cap, header and keep-alive timeouts,
    parser errors in OpenAI's shape."""
    services = app.get(SERVICES)
    settings = services.settings if services is not None else None
    # A client that disconnects cancels its handler, so nothing waits on its behalf (an
    # upstream that went quiet, say); cleanup runs on the way out. aiohttp's test server does
    # the same, so tests see what production does.
    runner = web.AppRunner(
        app,
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=grace_s + ENDING_S,
        keepalive_timeout=settings.keepalive_timeout_s if settings else 75.0,
    )
    await runner.setup()
    if settings is None:  # the simulator beside `make run`
        await web.TCPSite(runner, host, port, reuse_port=reuse_port).start()
        return runner
    guard = Guard(
        cap=settings.max_connections or default_connection_cap(),
        header_timeout_s=settings.header_timeout_s,
        on_count=app[SERVICES].metrics.edge_turned_away,
    )
    try:
        await GuardedSite(runner, host, port, guard, reuse_port=reuse_port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


async def serve_apps(
    apps: list[tuple[web.Application, str, int]],
    on_ready: str | None = None,
    *,
    grace_s: float = 30.0,
    reuse_port: bool = False,
) -> None:
    """Serve each (app, host, port) until SIGINT or SIGTERM, then shut all down in reverse.

    Shutting down an app: its listener closes at once, requests and streams in flight get
    `grace_s` to finish; then the app cuts its upstream reads (see lifecycle.stopping), and what is
    still running after ENDING_S more is cancelled (its ledger row written); then its cleanup
    runs.
    """
    runners = []
    try:
        for app, host, port in apps:
            runners.append(await start_app(app, host, port, grace_s=grace_s, reuse_port=reuse_port))
        if on_ready:
            print(on_ready, flush=True)
        await _wait_for_signal([app for app, _, _ in apps])
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


def check_can_start(settings: Settings, ports: list[tuple[str, int, str]]) -> None:
    """Raise CannotStart, before anything is changed, when a gateway already serves from this
    data dir or a port (host, port, the setting that moves it) is taken."""
    running = read_pid(settings)
    if running is not None:
        raise CannotStart(
            f"a gateway (pid {running}) is already serving from {settings.data_dir}: stop it, or"
            " give this one another GATEWAY_DATA_DIR"
        )
    for host, port, setting in ports:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise CannotStart(
                    f"port {port} on {host} is in use ({exc.strerror}): stop what uses it, or set"
                    f" {setting} to another port"
                ) from None


def serve(settings: Settings) -> int:
    """`gateway serve`: in this process, or as a supervisor of `settings.workers` workers."""
    check_can_start(settings, [(settings.host, settings.port, "GATEWAY_PORT")])
    if settings.workers > 1:
        from gateway.runtime.workers import supervise

        return supervise(settings)
    with pid_file(settings):
        asyncio.run(
            serve_apps(
                [(create_app(settings), settings.host, settings.port)],
                on_ready=f"gateway listening on http://{settings.host}:{settings.port}"
                f" (upstream {settings.upstream_url})",
                grace_s=settings.shutdown_grace_s,
            )
        )
    return 0


def serve_worker(settings: Settings) -> int:
    """One of several workers: the port is shared (SO_REUSEPORT); the supervisor did the
    start-up work and owns the pid file."""
    asyncio.run(
        serve_apps(
            [(create_app(settings, worker=True), settings.host, settings.port)],
            grace_s=settings.shutdown_grace_s,
            reuse_port=True,
        )
    )
    return 0
