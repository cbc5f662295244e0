"""A session with a serving worker, made through the facade, shared by the probes."""

from __future__ import annotations

import aiohttp
import pytest

from ..helpers import ACME, auth, eventually

SESSIONS = "/session-storage/sessions"


@pytest.fixture(scope="module")
async def ready_session(http_module):
    """A session made through the facade whose worker is serving."""
    async with http_module.post(SESSIONS, json={"data": {"publisher_count": 1, "subscriber_count": 1}},
                                headers=auth(ACME)) as response:
        data = (await response.json())["data"]
    assert response.status == 200, data

    async def worker_ready():
        async with http_module.get(f"{SESSIONS}/{data['session_id']}", headers=auth(ACME)) as response:
            return (await response.json())["data"]["worker_ready"]

    await eventually(worker_ready, timeout=90, what="worker ready")
    yield data
    async with http_module.delete(f"{SESSIONS}/{data['session_id']}", headers=auth(ACME)):
        pass


@pytest.fixture(scope="module")
async def http_module(facade):
    async with aiohttp.ClientSession(base_url=facade) as session:
        yield session
