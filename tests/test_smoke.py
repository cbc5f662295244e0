"""The loopback control plane and livekit-server are real and reachable."""

from kubernetes_asyncio.client import CoreV1Api
from livekit import api as livekit_api


async def test_namespace_roundtrip(kube):
    core = CoreV1Api(kube)
    await core.create_namespace({"metadata": {"name": "smoke-ns"}})
    names = [ns.metadata.name for ns in (await core.list_namespace()).items]
    assert "smoke-ns" in names
    await core.delete_namespace("smoke-ns")


async def test_livekit_room_roundtrip(livekit):
    async with livekit_api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as lk:
        await lk.room.create_room(livekit_api.CreateRoomRequest(name="smoke-room", max_participants=3))
        rooms = await lk.room.list_rooms(livekit_api.ListRoomsRequest())
        assert "smoke-room" in [room.name for room in rooms.rooms]
        await lk.room.delete_room(livekit_api.DeleteRoomRequest(room="smoke-room"))
