"""A page's reads run side by side, at most AT_ONCE at a time, results in their order."""

from __future__ import annotations

import asyncio

import pytest

from gateway.console.side_by_side import AT_ONCE, side_by_side


async def test_reads_overlap_up_to_the_limit_and_keep_their_order() -> None:
    running, most = 0, 0

    async def read(value: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01 * (10 - value))  # later reads finish first
        running -= 1
        return value

    assert await side_by_side(read(i) for i in range(10)) == list(range(10))
    assert most == AT_ONCE


async def test_a_failing_read_fails_the_page() -> None:
    async def broken() -> int:
        raise LookupError("gone")

    async def fine() -> int:
        return 1

    with pytest.raises(LookupError, match="gone"):
        await side_by_side([fine(), broken()])
