"""Ledger rows the store could not take, kept on disk until it can; and holds left by the dead.

What holds:
- A ledger row whose write fails (disk full, the database locked past its timeout) is appended,
  fsynced, to `<data dir>/journal/ledger-<pid>.jsonl` before the request ends, and written into
  the store by `replay` as soon as the store takes it: by housekeeping and at start. Replaying is
  idempotent (the ledger has one row per request id), and any process may replay any file: it
  renames the file first, so two never replay the same one, and takes the file's lock, so a row
  being appended is never lost.
- A row the store refuses while it otherwise answers (a value it cannot hold, say) is moved to
  `quarantine/` beside the journal, logged and counted: it never blocks a start, a replay or the
  rows after it. A store that does not answer leaves the rest of the file for a later replay.
- `settle_holds` runs after a replay, so a request whose row was journaled is never also charged
  as an orphan.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import functools
import json
import logging
import os
import secrets
import socket
import sqlite3
import sys
import time
from collections.abc import Collection
from pathlib import Path
from typing import NamedTuple

from gateway.store.base import LedgerRow, Store

log = logging.getLogger(__name__)
# A replay file this old belongs to a replayer that died mid-way: another process takes it over.
STALE_REPLAY_S = 60.0


def this_process() -> str:
    """The owner recorded on this process's holds: `host:pid:start`, where `start` is drawn when
    the process first asks, so a restarted container with the same hostname and pid is not
    taken for its dead predecessor."""
    return _owner(os.getpid())


@functools.cache
def _owner(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}:{secrets.token_hex(3)}"


def dead_local_owners(owners: list[str]) -> list[str]:
    """Of `owners` (`host:pid:start`, or `host:pid` as older versions wrote), those on this host
    whose process no longer runs."""
    host = socket.gethostname()
    dead = []
    for owner in owners:
        where, _, rest = owner.partition(":")
        pid = rest.partition(":")[0]
        if where != host or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            dead.append(owner)
        except PermissionError:
            pass  # alive, another user's
    return dead


async def settle_holds(store: Store, *, silent: Collection[str] = ()) -> int:
    """Holds that will never settle become `orphaned` ledger rows: expired ones, those of a dead
    process on this host, and those of the `silent` owners (heartbeats.py). How many."""
    dead_owners = {*dead_local_owners(await store.holders()), *silent}
    settled = await store.settle_orphans(time.time(), dead_owners)
    if settled:
        log.warning(
            "settled %d holds whose requests never finished as `orphaned` ledger rows, charged"
            " their estimates",
            settled,
        )
    return settled


class Replayed(NamedTuple):
    rows: int  # written into the store
    quarantined: int  # refused by it, moved aside


def refused_row(exc: BaseException) -> bool:
    """Whether `exc` says the store refuses this row itself (a value it cannot hold, a type it
    cannot bind), as opposed to the store being down or busy."""
    refusals: tuple[type[BaseException], ...] = (
        OverflowError,
        ValueError,
        TypeError,
        sqlite3.IntegrityError,
        sqlite3.InterfaceError,
        sqlite3.DataError,
    )
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is not None:
        refusals += (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)
    return isinstance(exc, refusals)


class LedgerJournal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def quarantine_dir(self) -> Path:
        return self.directory / "quarantine"

    async def append(self, row: LedgerRow) -> None:
        """Keep `row` on disk (fsynced) until it can be written into the store."""
        line = json.dumps(dataclasses.asdict(row), ensure_ascii=True) + "\n"
        await asyncio.to_thread(self._append, line.encode())

    def _append(self, line: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"ledger-{os.getpid()}.jsonl"
        while True:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    current = os.stat(path).st_ino
                except FileNotFoundError:
                    current = None
                if current != os.fstat(fd).st_ino:
                    continue  # a replayer took this file away: write to a new one
                os.write(fd, line)
                os.fsync(fd)
                return
            finally:
                os.close(fd)

    async def pending(self) -> int:
        """Rows waiting in the journal."""
        return await asyncio.to_thread(self._count_rows, self.directory)

    @staticmethod
    def _count_rows(directory: Path) -> int:
        if not directory.exists():
            return 0
        return sum(len(path.read_bytes().splitlines()) for path in directory.glob("*.jsonl"))

    async def quarantined(self) -> int:
        """Rows the store refused, waiting in quarantine for the operator."""
        return await asyncio.to_thread(self._count_rows, self.quarantine_dir)

    async def replay(self, store: Store) -> Replayed:
        """Write every journaled row into the store; files are removed once all their rows are
        in or quarantined. A store that still fails leaves the rest for later."""
        replayed = quarantined = 0
        for path in await asyncio.to_thread(self._claim_files):
            for row in await asyncio.to_thread(self._read_locked, path):
                try:
                    await store.record(row)
                except Exception as exc:
                    if not refused_row(exc):
                        raise
                    await asyncio.to_thread(self._quarantine, row, exc)
                    quarantined += 1
                else:
                    replayed += 1
            await asyncio.to_thread(path.unlink, missing_ok=True)
        if replayed:
            log.warning("replayed %d journaled ledger rows into the store", replayed)
        return Replayed(replayed, quarantined)

    def _quarantine(self, row: LedgerRow, exc: BaseException) -> None:
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        path = self.quarantine_dir / f"ledger-{os.getpid()}.jsonl"
        line = json.dumps({"row": dataclasses.asdict(row), "error": repr(exc)[:500]})
        with path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        log.error(
            "the store refused journaled ledger row %s (%s): moved to %s for the operator; the"
            " replay goes on",
            row.request_id,
            exc,
            path,
        )

    def _claim_files(self) -> list[Path]:
        if not self.directory.exists():
            return []
        claimed = []
        now = time.time()
        for path in sorted(self.directory.glob("*.jsonl")):
            if path.name.startswith("replay-"):
                with contextlib.suppress(FileNotFoundError):
                    if now - path.stat().st_mtime < STALE_REPLAY_S:
                        continue  # another replayer is at it
            target = path.with_name(f"replay-{os.getpid()}-{secrets.token_hex(4)}.jsonl")
            try:
                path.rename(target)
                os.utime(target)  # claimed now: others leave it alone for STALE_REPLAY_S
            except FileNotFoundError:
                continue  # another process claimed it first
            claimed.append(target)
        return claimed

    def _read_locked(self, path: Path) -> list[LedgerRow]:
        with path.open("rb") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # a writer mid-append finishes first
            lines = handle.read().splitlines()
        rows = []
        for line in lines:
            try:
                rows.append(LedgerRow(**json.loads(line)))
            except (ValueError, TypeError):
                log.error("journal %s holds a line that is not a ledger row: %.200r", path, line)
        return rows
