"""`gateway serve` with `GATEWAY_WORKERS` > 1: a supervisor and its worker processes.

The supervisor does the start-up work once (migrations, emptying the shared temporary dirs and
the metric files of earlier runs), then starts the workers: `gateway serve --worker`, each
listening on the same port with SO_REUSEPORT, so the kernel spreads connections among them. Each
worker writes its metrics to files in `PROMETHEUS_MULTIPROC_DIR` (set here, before the worker
imports prometheus-client), and any worker's `/metrics` sums them all.

The supervisor restarts a worker that dies, forwards SIGHUP (reload prices) to every worker, and
on SIGTERM or SIGINT asks every worker to stop, waits for them (each has its own grace), and
exits 0 if they all did.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from prometheus_client.multiprocess import mark_process_dead

from gateway.accounting.journal import LedgerJournal, settle_holds
from gateway.cache.files import BodyFiles
from gateway.runtime.lifecycle import empty_spool_dir, open_store_or_say_why
from gateway.runtime.pidfile import pid_file
from gateway.settings import Settings
from gateway.store import open_store

log = logging.getLogger(__name__)
RESTART_BACKOFF_S = 1.0
POLL_S = 0.2


def metrics_dir(settings: Settings) -> Path:
    return settings.data_dir / "metrics"


async def _settle_the_books(settings: Settings) -> None:
    """Journaled rows into the store, then the holds of dead processes settled (see journal).
    A store that cannot be opened raises CannotStart."""
    store = open_store(settings.resolved_database_url, timeout_s=settings.database_timeout_s)
    try:
        await open_store_or_say_why(store, settings.resolved_database_url)
        await LedgerJournal(settings.ledger_journal_dir).replay(store)
        await settle_holds(store)
    finally:
        await store.close()


def prepare(settings: Settings) -> Path:
    """Start-up work done once for all workers; returns the metrics directory, emptied."""
    asyncio.run(_settle_the_books(settings))
    empty_spool_dir(settings)
    BodyFiles(settings.cache_dir).prepare(shared=settings.cache_shared)
    directory = metrics_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in directory.glob("*.db"):  # counts of an earlier run would be summed in
        leftover.unlink()
    return directory


class Supervisor:
    def __init__(self, settings: Settings, directory: Path) -> None:
        self.settings = settings
        self.directory = directory
        self.env = os.environ | {
            "PROMETHEUS_MULTIPROC_DIR": str(directory),
            "GATEWAY_HOST": settings.host,
            "GATEWAY_PORT": str(settings.port),
        }
        self.workers: list[subprocess.Popen[bytes]] = []
        self.stopping = False

    def start_worker(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--worker"], env=self.env
        )

    def run(self) -> int:
        self.workers = [self.start_worker() for _ in range(self.settings.workers)]
        print(
            f"gateway listening on http://{self.settings.host}:{self.settings.port}"
            f" with {self.settings.workers} workers (upstream {self.settings.upstream_url})",
            flush=True,
        )
        while not self.stopping:
            time.sleep(POLL_S)
            for index, worker in enumerate(self.workers):
                if worker.poll() is not None and not self.stopping:
                    self._restart(index, worker)
        return self._stop_all()

    def _restart(self, index: int, dead: subprocess.Popen[bytes]) -> None:
        log.error("worker %d exited with %s; starting another", dead.pid, dead.returncode)
        self._forget(dead)
        try:  # its holds will never settle: charge them now rather than after their TTL
            asyncio.run(_settle_the_books(self.settings))  # it was reaped: its pid runs no more
        except Exception:
            log.exception("could not settle the holds of worker %d; they expire instead", dead.pid)
        time.sleep(RESTART_BACKOFF_S)  # a worker that cannot start must not spin
        self.workers[index] = self.start_worker()

    def _stop_all(self) -> int:
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_grace_s + 10
        clean = True
        for worker in self.workers:
            try:
                code = worker.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
                code = worker.wait()
            self._forget(worker)
            clean = clean and code == 0
        return 0 if clean else 1

    def _forget(self, worker: subprocess.Popen[bytes]) -> None:
        """A dead worker's live gauges (in flight, open streams) stop counting."""
        mark_process_dead(worker.pid, str(self.directory))  # type: ignore[no-untyped-call]

    def on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def on_reload(self, signum: int, frame: FrameType | None) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGHUP)


def supervise(settings: Settings) -> int:
    supervisor = Supervisor(settings, prepare(settings))
    signal.signal(signal.SIGTERM, supervisor.on_stop)
    signal.signal(signal.SIGINT, supervisor.on_stop)
    signal.signal(signal.SIGHUP, supervisor.on_reload)
    with pid_file(settings):
        return supervisor.run()
