"""Body files named by their content: stored once, renamed into place whole, and never served
when what is on disk is not what the name says (a body torn by a crash, since stores are not
fsynced, or changed by hand)."""

from __future__ import annotations

import hashlib
from pathlib import Path

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
