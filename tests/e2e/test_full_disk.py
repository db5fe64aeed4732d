"""Issue 22: a full data disk loses no ledger row. The data dir is a small tmpfs (mounted by the
test, as root, as CI runs), filled to the last byte while the gateway serves; the journal is on
a volume of its own (GATEWAY_JOURNAL_DIR). Every request upstream saw has its row; what cannot
be recorded first is refused with a clean 503 before upstream; `/readyz` says so; and once space
returns, the gateway serves again by itself."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway.admin import accounts
from gateway.app import create_app
from gateway.runtime.state import SERVICES
from gateway.settings import Settings
from tests.conftest import FakeUpstream
from tests.e2e.test_cache import sdk_for

pytestmark = pytest.mark.sqlite_only  # the disk under SQLite's own file


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, unmounted afterwards."""
    assert os.geteuid() == 0, "this test mounts a tmpfs: run it as root (CI does)"
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Fill the filesystem of `directory` to its last byte; the filler file's path."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


async def test_a_full_data_disk_loses_no_row_and_recovers_by_itself(
    aiohttp_client: Any,
    make_settings: Callable[..., Settings],
    fake_upstream: FakeUpstream,
    small_disk: Path,
    tmp_path: Path,
) -> None:
    settings = make_settings(
        upstream_url=fake_upstream.url,
        data_dir=small_disk / "data",
        journal_dir=tmp_path / "journal",  # its own volume
        database_timeout_s=1,
    )
    client = await aiohttp_client(create_app(settings))
    store = client.app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t"))  # no budget
    key = (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret
    sdk = sdk_for(client, key)
    request: dict[str, Any] = {"model": "gpt-image-1.5", "prompt": "full", "quality": "low"}
    await sdk.images.generate(**request)

    filler = fill(small_disk)
    answered, refused = 0, 0
    for i in range(20):
        try:
            await sdk.images.generate(**{**request, "prompt": f"full {i}"})
            answered += 1
        except openai.InternalServerError as exc:
            assert exc.status_code == 503 and exc.code == "storage_unavailable"
            refused += 1
    assert answered + refused == 20
    assert refused > 0, "the full disk should have refused something"
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["ledger"].startswith("failed: storage_unavailable")

    with contextlib.suppress(FileNotFoundError):
        filler.unlink()  # space returns
    ready = await client.get("/readyz")
    assert ready.status == 200  # by itself: its probe write passed
    await sdk.images.generate(**{**request, "prompt": "after"})
    from gateway.runtime.lifecycle import _settle_the_books

    await _settle_the_books(client.app)  # the journal drains
    await asyncio.sleep(0)
    upstream_ids = {
        r.headers["x-client-request-id"] for r in fake_upstream.requests if r.method == "POST"
    }
    rows = {row[0]: row[1] for row in await store._all("SELECT request_id, outcome FROM ledger")}
    assert upstream_ids <= set(rows), "an upstream call without its ledger row"
    assert len(upstream_ids) == 1 + answered + 1  # nothing refused went upstream
    assert list(rows.values()).count("error") == refused  # the refusals have rows too
    assert (await store._all("SELECT COUNT(*) FROM reservations"))[0][0] == 0
    await sdk.close()
