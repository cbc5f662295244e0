"""livekit-server dies and comes back: conditions say so within seconds, and the room returns
with the operator's settings (not LiveKit's defaults), with the worker back in it."""

from __future__ import annotations

import asyncio
import time

import aiohttp
from livekit import api as livekit_api

from lingo_api import resources as r

from ..helpers import condition, eventually, get_session

SESSIONS = "/session-storage/sessions"


async def test_livekit_restart_is_reported_and_repaired(stack):
    headers = {"ClientID": stack.client[0], "ClientSecret": stack.client[1]}
    async with aiohttp.ClientSession(base_url=stack.facade_url) as http:
        async with http.post(SESSIONS, json={"data": {"publisher_count": 2, "subscriber_count": 3}},
                             headers=headers) as response:
            data = (await response.json())["data"]
        assert response.status == 200, data
    name, room = data["session_id"], data["room_name"]

    async def condition_is(ctype: str, value: str):
        session = await get_session(stack.kube, stack.namespace, name)
        return session if condition(session, ctype)["status"] == value else None

    await eventually(lambda: condition_is(r.Condition.WORKER_READY, "True"), timeout=90, what="worker ready")

    livekit = stack.cluster.process("livekit-server")
    livekit.stop()
    down_at = time.monotonic()
    session = await eventually(lambda: condition_is(r.Condition.ROOM_READY, "False"), timeout=10,
                               what="RoomReady=False while LiveKit is down")
    room_noticed = time.monotonic() - down_at
    assert condition(session, r.Condition.ROOM_READY)["reason"] == "LiveKitUnavailable"
    await eventually(lambda: condition_is(r.Condition.WORKER_READY, "False"), timeout=10,
                     what="WorkerReady=False while LiveKit is down")
    worker_noticed = time.monotonic() - down_at
    await asyncio.sleep(3)

    stack.cluster.restart("livekit-server")
    up_at = time.monotonic()
    await eventually(lambda: condition_is(r.Condition.ROOM_READY, "True"), timeout=20, what="RoomReady again")
    await eventually(lambda: condition_is(r.Condition.WORKER_READY, "True"), timeout=60, what="worker back")
    recovered = time.monotonic() - up_at
    lk = stack.cluster.livekit
    async with livekit_api.LiveKitAPI(lk.http_url, lk.api_key, lk.api_secret) as api:
        rooms = (await api.room.list_rooms(livekit_api.ListRoomsRequest(names=[room]))).rooms
    assert len(rooms) == 1
    assert rooms[0].max_participants == 2 + 3 + 1 and rooms[0].departure_timeout == 60, rooms[0]
    print(f"\nLiveKit down: RoomReady=False after {room_noticed:.1f}s, WorkerReady=False after {worker_noticed:.1f}s; "
          f"back up: room and worker ready after {recovered:.1f}s")
