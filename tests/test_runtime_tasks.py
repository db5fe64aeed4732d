"""The one owner of background work: every task named and kept until it ends, its failure
logged rather than lost, lasting ones cancelled and the others waited for at close."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.runtime.tasks import Tasks


async def test_a_task_is_kept_until_it_ends_and_its_failure_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = Tasks()
    release = asyncio.Event()

    async def work() -> str:
        await release.wait()
        return "done"

    async def fails() -> None:
        raise RuntimeError("nobody waits for me")

    task, failing = tasks.spawn("work", work()), tasks.spawn("fails", fails())
    assert task.get_name() == "work" and set(tasks.pending()) == {task, failing}
    with caplog.at_level(logging.ERROR, logger="gateway.runtime.tasks"):
        await asyncio.wait([failing])
        await asyncio.sleep(0)  # its done callback runs next
    assert tasks.pending() == [task]
    assert "background task fails failed" in caplog.text
    release.set()
    await tasks.settle()
    assert await task == "done" and tasks.pending() == []


async def test_close_cancels_lasting_tasks_and_waits_for_the_others_within_the_grace() -> None:
    tasks = Tasks()
    finished: list[str] = []

    async def lasting() -> None:
        await asyncio.Event().wait()

    async def short() -> None:
        await asyncio.sleep(0.01)
        finished.append("short")

    async def endless() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            finished.append("endless cancelled")

    housekeeping = tasks.spawn("housekeeping", lasting(), lasting=True)
    tasks.spawn("short", short())
    tasks.spawn("endless", endless())
    assert len(tasks.pending()) == 2  # the lasting one is not waited for
    await tasks.close(grace_s=0.2)
    assert housekeeping.cancelled()
    assert finished == ["short", "endless cancelled"]
    assert tasks.pending() == []
