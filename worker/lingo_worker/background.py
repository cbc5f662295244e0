"""Tasks started and not awaited where they start: a track's audio, a data packet's handling, a
speaker's last words. asyncio keeps only a weak reference to a task, so one nobody holds can be
collected mid-way; here each is held until it ends, a failure is logged with its reason, and
shutdown cancels and awaits what is left."""

from __future__ import annotations

import asyncio
import logging
from typing import Coroutine

log = logging.getLogger("lingo.worker")

SHUTDOWN_SECONDS = 5.0


class BackgroundTasks:
    def __init__(self):
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coroutine: Coroutine, name: str) -> asyncio.Task:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("%s failed: %s: %s", task.get_name(), type(exc).__name__, exc, exc_info=exc)

    async def aclose(self) -> None:
        """Cancel what is still running and wait for it (not for the task calling this)."""
        pending = [task for task in self._tasks if task is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=SHUTDOWN_SECONDS)
