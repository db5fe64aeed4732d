"""Body files named by their content: stored once, renamed into place whole, and never served
when what is on disk is not what the name says (a body torn by a crash, since stores are not
fsynced, or changed by hand)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from gateway.cache.files import BodyFiles


def stored(tmp_path: Path) -> tuple[BodyFiles, bytes, str]:
    files = BodyFiles(tmp_path / "cache")
    files.prepare()
    data = b'{"data": [{"b64_json": "eA=="}]}'
    (written,) = files.name_all([data])
    assert written is not None
    return files, data, written.sha256


def test_a_body_is_named_by_its_content_and_stored_once(tmp_path: Path) -> None:
    files, data, sha256 = stored(tmp_path)
    assert sha256 == hashlib.sha256(data).hexdigest()
    assert files.path(sha256).read_bytes() == data
    inode = files.path(sha256).stat().st_ino
    (again,) = files.name_all([data])  # known and unchanged: not written again
    assert again is not None and files.path(sha256).stat().st_ino == inode
    assert list(files.tmp.iterdir()) == []  # nothing half-written left behind


async def test_a_torn_or_changed_body_is_never_served_and_a_new_store_repairs_it(
    tmp_path: Path,
) -> None:
    files, data, sha256 = stored(tmp_path)
    handle = await files.open_verified(sha256, len(data))
    assert handle is not None and handle.read() == data
    handle.close()
    torn = bytearray(data)
    torn[5] ^= 0x20  # same size, other bytes: as a crash or a hand could leave it
    files.path(sha256).write_bytes(bytes(torn))
    assert await files.open_verified(sha256, len(data)) is None
    files.name_all([data])  # the next response with this body writes it again
    repaired = await files.open_verified(sha256, len(data))
    assert repaired is not None and repaired.read() == data
    repaired.close()
    files.path(sha256).write_bytes(data[:-1])  # cut short
    assert await files.open_verified(sha256, len(data)) is None


async def test_a_verified_body_is_kept_open_until_it_is_removed_or_changed(
    tmp_path: Path,
) -> None:
    """The second hit opens nothing on a thread; the handles share the body at explicit
    offsets; a body removed, or written over, is opened (and hashed) again."""
    files, data, sha256 = stored(tmp_path)
    opened: list[str] = []
    real_open = files._open_verified

    def counted(sha: str, size: int) -> Any:
        opened.append(sha)
        return real_open(sha, size)

    files._open_verified = counted  # type: ignore[method-assign, assignment]
    first = await files.open_verified(sha256, len(data))
    second = await files.open_verified(sha256, len(data))
    assert first is not None and second is not None and opened == [sha256]
    assert os.pread(second.fileno(), len(data), 0) == data
    first.close()
    assert os.pread(second.fileno(), len(data), 0) == data  # its own descriptor
    second.close()
    files.path(sha256).unlink()
    assert await files.open_verified(sha256, len(data)) is None and len(opened) == 2
    (written,) = files.name_all([data])
    assert written is not None
    kept = await files.open_verified(sha256, len(data))
    assert kept is not None and len(opened) == 3
    kept.close()
    path = files.path(sha256)
    written_at = path.stat().st_mtime_ns
    path.write_bytes(data.replace(b"eA", b"eB"))  # in place: same inode, new bytes
    os.utime(path, ns=(written_at, written_at + 10**9))  # later, past the clock's granularity
    assert await files.open_verified(sha256, len(data)) is None and len(opened) == 4
    files.close()
