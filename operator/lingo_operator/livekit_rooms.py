"""LiveKit rooms through livekit-api's RoomService, with every failure turned into one error type."""

from __future__ import annotations

import asyncio

import aiohttp
from livekit import api as livekit_api
from livekit.api.twirp_client import ServerError

from .fencing import Fence


class LiveKitUnavailable(RuntimeError):
    """LiveKit could not be reached or refused the call; the reconcile retries with back-off."""


_TRANSIENT = (ServerError, aiohttp.ClientError, asyncio.TimeoutError, OSError)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ServerError):
        return f"LiveKit answered {exc.status} {exc.code}: {exc.message}"
    if isinstance(exc, asyncio.TimeoutError):
        return "LiveKit did not answer in time"
    return f"LiveKit is unreachable ({type(exc).__name__})"


# Seconds LiveKit keeps a room after its last participant left (then it closes it).
DEPARTURE_TIMEOUT_SECONDS = 60


class RoomService:
    """`fence` guards room creation and deletion (fencing.py): a replica that cannot prove it
    leads must not bring back the room of a session deleted meanwhile."""

    def __init__(self, url: str, api_key: str, api_secret: str, fence: Fence, timeout_seconds: float = 5.0):
        self._fence = fence
        # livekit-api wants an http(s) URL for its Twirp calls.
        http_url = url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
        self._api = livekit_api.LiveKitAPI(
            http_url, api_key, api_secret, timeout=aiohttp.ClientTimeout(total=timeout_seconds)
        )

    async def close(self) -> None:
        await self._api.aclose()

    async def ensure_room(self, name: str, *, empty_timeout: int, max_participants: int, metadata: str = "") -> None:
        """Create the room, or accept it as it is: LiveKit's CreateRoom is idempotent by name.

        `metadata` records which session the room belongs to, so the operator can tell its own
        rooms from others' when it sweeps up rooms left behind (lingo_operator.room_watch).
        """
        self._fence.check(f"create room {name}")
        try:
            await self._api.room.create_room(
                livekit_api.CreateRoomRequest(
                    name=name, empty_timeout=empty_timeout, departure_timeout=DEPARTURE_TIMEOUT_SECONDS,
                    max_participants=max_participants, metadata=metadata,
                )
            )
        except _TRANSIENT as exc:
            raise LiveKitUnavailable(_describe(exc)) from exc

    async def list_rooms(self) -> list:
        """Every room on the LiveKit server (livekit.protocol Room messages)."""
        try:
            response = await self._api.room.list_rooms(livekit_api.ListRoomsRequest())
        except _TRANSIENT as exc:
            raise LiveKitUnavailable(_describe(exc)) from exc
        return list(response.rooms)

    async def delete_room(self, name: str) -> None:
        """Delete the room; a room that is already gone counts as deleted."""
        self._fence.check(f"delete room {name}")
        try:
            await self._api.room.delete_room(livekit_api.DeleteRoomRequest(room=name))
        except ServerError as exc:
            if exc.code == "not_found" or exc.status == 404:
                return
            raise LiveKitUnavailable(_describe(exc)) from exc
        except _TRANSIENT as exc:
            raise LiveKitUnavailable(_describe(exc)) from exc
