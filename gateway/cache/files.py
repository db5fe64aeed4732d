"""Cached response bodies on disk, each a file named by the SHA-256 of its content.

What holds: a file under `bodies/` was complete when it got its name (bodies are written to
`tmp/`, then renamed), so an identical body is stored once and a running gateway never sees half a
body under a name. Bodies are not fsynced: a cache is not worth a disk flush per store (it cost
more CPU than the rest of a request). A machine that crashes may leave a torn body behind a name;
that is caught before it is served, because a body is served only after its content was hashed
and found equal to its name, once per process and again whenever the file's inode, size or mtime
change; a file that fails is reported missing (its entry dropped), never served.

Every disk operation runs on a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK = 1024 * 1024
STALE_TMP_S = 3600.0  # a partial write this old in a shared directory was left by a dead process
# Verified body files kept open (least recently served go first): a hit then needs no open() on
# a worker thread, only an fstat and a dup here.
KEPT_OPEN = 128
SEND_CHUNK = 256 * 1024  # per read when sendfile is missing: 100 hits in flight hold ~25 MiB


@dataclass(frozen=True, slots=True)
class Written:
    """A complete body in a temporary file, not yet named."""

    temp: Path
    sha256: str
    size: int


class BodyFiles:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bodies = root / "bodies"
        self.tmp = root / "tmp"
        # sha256 → (inode, size, mtime_ns) of the file as last hashed: trusted while unchanged.
        self._verified: dict[str, tuple[int, int, int]] = {}
        self._parents: set[Path] = set()  # bodies/xx/ directories known to exist
        self._kept: OrderedDict[str, int] = OrderedDict()  # sha256 → fd of a verified body

    def prepare(self, *, empty_tmp: bool = True, shared: bool = False) -> None:
        """Create the directories and drop partial writes a dead process left (blocking: call at
        start, before serving). Worker processes sharing the directory leave `tmp/` alone: the
        supervisor emptied it before any of them started. In a directory other gateways share
        (`shared`), only partial writes older than an hour go: younger ones may be theirs."""
        self.bodies.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        if not empty_tmp:
            return
        oldest = time.time() - STALE_TMP_S if shared else float("inf")
        for leftover in self.tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if leftover.stat().st_mtime < oldest:
                    leftover.unlink()

    def path(self, sha256: str) -> Path:
        return self.bodies / sha256[:2] / sha256

    async def copy_file(self, source: Path) -> Written:
        """Copy the file at `source` to a temporary file; `name()` it after."""
        return await asyncio.to_thread(self._copy, source)

    async def discard(self, written: Written) -> None:
        await asyncio.to_thread(written.temp.unlink, missing_ok=True)

    async def new_tee(self) -> Tee:
        fd, name = await asyncio.to_thread(self._temp)
        return Tee(fd, Path(name))

    async def open_verified(self, sha256: str, size: int) -> BinaryIO | None:
        """The body file open for reading, or None when it is missing or not what its name says.

        The handle may share its file offset with other readers of the same body: read it at
        explicit offsets (sendfile, `os.pread`), never by position. A body kept open is served
        while its file is still there and unchanged since it was hashed (same inode, size and
        mtime); else it is opened (and hashed) again."""
        kept = self._kept_open(sha256, size)
        if kept is not None:
            return kept
        handle = await asyncio.to_thread(self._open_verified, sha256, size)
        if handle is not None and sha256 not in self._kept:
            self._kept[sha256] = os.dup(handle.fileno())
            while len(self._kept) > KEPT_OPEN:
                os.close(self._kept.popitem(last=False)[1])
        return handle

    def _kept_open(self, sha256: str, size: int) -> BinaryIO | None:
        fd = self._kept.get(sha256)
        if fd is None:
            return None
        st = os.fstat(fd)  # of an open descriptor: no path lookup, nothing to wait on
        unchanged = self._verified.get(sha256) == (st.st_ino, st.st_size, st.st_mtime_ns)
        if st.st_nlink == 0 or st.st_size != size or not unchanged:
            self._forget(sha256)  # removed, or changed since it was hashed: opened again
            return None
        self._kept.move_to_end(sha256)
        return os.fdopen(os.dup(fd), "rb")

    def _forget(self, sha256: str) -> None:
        self._verified.pop(sha256, None)
        fd = self._kept.pop(sha256, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        """Close the bodies kept open."""
        while self._kept:
            os.close(self._kept.popitem()[1])

    async def remove(self, hashes: Iterable[str]) -> None:
        hashes = list(hashes)
        paths = [self.path(sha256) for sha256 in hashes]
        for sha256 in hashes:
            self._forget(sha256)
        if paths:
            await asyncio.to_thread(_unlink_all, paths)

    async def is_intact(self, sha256: str, size: int) -> bool:
        """Rehash the file (whatever was verified before)."""
        self._forget(sha256)
        handle = await self.open_verified(sha256, size)
        if handle is None:
            return False
        await asyncio.to_thread(handle.close)
        return True

    async def stray_files(self, known: set[str], min_age_s: float) -> list[str]:
        """Body files no index entry names, older than `min_age_s` (younger ones may be in the
        middle of being stored by a running gateway)."""

        def scan() -> list[str]:
            oldest = time.time() - min_age_s
            return [
                p.name
                for p in self.bodies.glob("*/*")
                if p.name not in known and p.stat().st_mtime < oldest
            ]

        return await asyncio.to_thread(scan)

    # Blocking helpers, run on worker threads.

    def _temp(self) -> tuple[int, str]:
        try:
            return tempfile.mkstemp(prefix="body-", dir=self.tmp)
        except FileNotFoundError:  # the directory went away (removed by hand): made again
            self.tmp.mkdir(parents=True, exist_ok=True)
            return tempfile.mkstemp(prefix="body-", dir=self.tmp)

    def _write(self, chunks: Iterable[bytes]) -> Written:
        fd, name = self._temp()
        try:
            digest = hashlib.sha256()
            size = 0
            for chunk in chunks:
                digest.update(chunk)
                _write_all(fd, chunk)
                size += len(chunk)
        except BaseException:
            os.close(fd)
            os.unlink(name)
            raise
        os.close(fd)
        return Written(Path(name), digest.hexdigest(), size)

    def _copy(self, source: Path) -> Written:
        with source.open("rb") as handle:
            return self._write(iter(lambda: handle.read(CHUNK), b""))

    def _name(self, written: Written) -> None:
        final = self.path(written.sha256)
        if final.parent not in self._parents:  # one mkdir per directory, not per body
            final.parent.mkdir(parents=True, exist_ok=True)
            self._parents.add(final.parent)
        try:
            os.replace(written.temp, final)
        except FileNotFoundError:  # its directory went away since: made again
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(written.temp, final)
        self._remember(written.sha256, os.stat(final))

    def name_all(self, bodies: list[bytes | Written]) -> list[Written | None]:
        """Give each body its content name (blocking: one worker-thread call for a batch):
        bytes are written first (or not at all when that body is already stored), a temporary
        file is renamed. None for a body that could not be stored."""
        named: list[Written | None] = []
        for body in bodies:
            try:
                if isinstance(body, Written):
                    self._name(body)
                    named.append(body)
                else:
                    named.append(self._store_bytes(body))
            except OSError:
                logging.getLogger(__name__).exception("could not store a cache body")
                if isinstance(body, Written):
                    body.temp.unlink(missing_ok=True)
                named.append(None)
        return named

    def _store_bytes(self, data: bytes) -> Written:
        sha256 = hashlib.sha256(data).hexdigest()
        final = self.path(sha256)
        try:
            st = os.stat(final)
            known = self._verified.get(sha256) == (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            known = False
        if not known:  # a body this process has not verified as it is now is written again
            self._name(self._write([data]))
        return Written(final, sha256, len(data))

    def _remember(self, sha256: str, st: os.stat_result) -> None:
        self._verified[sha256] = (st.st_ino, st.st_size, st.st_mtime_ns)

    def _open_verified(self, sha256: str, size: int) -> BinaryIO | None:
        try:
            handle = self.path(sha256).open("rb")
        except OSError:
            return None
        st = os.fstat(handle.fileno())
        if st.st_size != size:
            handle.close()
            return None
        if self._verified.get(sha256) != (st.st_ino, st.st_size, st.st_mtime_ns):
            digest = hashlib.sha256()
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
            if digest.hexdigest() != sha256:
                handle.close()
                return None
            self._remember(sha256, st)
            handle.seek(0)
        return handle


class Tee:
    """A body written as it arrives (an event stream), readable at any offset while it grows.

    Readers (coalesced followers) take a reference; the file descriptor closes when the writer
    and every reader are done, so renaming or removing the file never cuts a reader short.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self._fd = fd
        self._path: Path | None = path
        self._digest = hashlib.sha256()
        self._refs = 1  # the writer's
        self.size = 0  # bytes written so far, all readable

    async def append(self, data: bytes | bytearray) -> None:
        await asyncio.to_thread(self._append, bytes(data))
        self.size += len(data)

    def _append(self, data: bytes) -> None:
        _write_all(self._fd, data)
        self._digest.update(data)

    async def read(self, offset: int, limit: int = CHUNK) -> bytes:
        return await asyncio.to_thread(os.pread, self._fd, min(limit, self.size - offset), offset)

    async def finish(self) -> Written:
        """The whole body; `BodyFiles.name()` it after. Readers keep reading the open file
        whatever happens to its name."""
        path, self._path = self._path, None
        assert path is not None, "a tee is finished or discarded once"
        return Written(path, self._digest.hexdigest(), self.size)

    async def discard(self) -> None:
        path, self._path = self._path, None
        if path is not None:
            await asyncio.to_thread(path.unlink, missing_ok=True)

    def retain(self) -> None:
        self._refs += 1

    async def release(self) -> None:
        self._refs -= 1
        if self._refs == 0:
            await self.discard()
            await asyncio.to_thread(os.close, self._fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
