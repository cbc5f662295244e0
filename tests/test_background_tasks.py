"""The worker's background tasks (worker/lingo_worker/background.py): held until they end, a
failure logged with its reason, and the rest cancelled and awaited at shutdown."""

from __future__ import annotations

import asyncio

from lingo_worker.background import BackgroundTasks


async def test_a_failure_is_logged_with_its_reason(caplog):
    tasks = BackgroundTasks()

    async def broken():
        raise ValueError("no such track")

    await asyncio.wait([tasks.spawn(broken(), "audio-publisher-0")])
    await asyncio.sleep(0)
    assert "audio-publisher-0 failed: ValueError: no such track" in caplog.text


async def test_shutdown_cancels_and_awaits_what_is_left_but_not_its_caller():
    tasks = BackgroundTasks()
    ended = []

    async def forever():
        try:
            await asyncio.Event().wait()
        finally:
            ended.append("forever")

    async def shutting_down():
        await tasks.aclose()
        ended.append("caller")

    tasks.spawn(forever(), "forever")
    await asyncio.sleep(0)
    await tasks.spawn(shutting_down(), "end-task")
    assert ended == ["forever", "caller"]
