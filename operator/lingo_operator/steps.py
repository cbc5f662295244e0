"""Running independent API steps at once."""

from __future__ import annotations

import asyncio


async def together(*steps):
    """Await independent steps at once; if one fails, the others are cancelled and its error is
    raised as it is (asyncio.gather would leave them running)."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
