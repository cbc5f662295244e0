"""Who is on the other end of a control message: a WebSocket client or a participant of the
room, with its token's grant and what it asked to receive (worker/lingo_worker/control_api.py)."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from aiohttp import web

from lingo_api.session_tokens import ControlGrant

from . import protocol
from .protocol import StreamSettings
from .stream_pace import StreamPace

if TYPE_CHECKING:
    from .control_api import TaskController

# Speakers whose audio comes over the control WebSocket (Palabra's ws mode) are named so.
WEBSOCKET_SPEAKER_PREFIX = "ws-"


def websocket_speaker(identity: str) -> str:
    return f"{WEBSOCKET_SPEAKER_PREFIX}{identity}"


async def send_message(ws: web.WebSocketResponse, message_type: str, data: dict) -> None:
    await ws.send_str(json.dumps({"message_type": message_type, "data": data}))


async def send_error(ws: web.WebSocketResponse, code: str, desc: str) -> None:
    """The protocol's `error` {code, desc}, before (or without) a peer for the socket."""
    await send_message(ws, "error", protocol.error(code, desc))


class Peer:
    """One authenticated control client: a WebSocket, or a participant of the room."""

    stream_api = False  # Palabra's 2.x streaming API (control_api.py's docstring): WebSocketPeer only

    def __init__(self, grant: ControlGrant):
        self.grant = grant
        self.streams = StreamSettings()
        self.speaker = None  # audio sent over the WebSocket (Palabra's ws mode)

    async def send(self, message_type: str, data: dict) -> None:
        raise NotImplementedError


class WebSocketPeer(Peer):
    def __init__(self, grant: ControlGrant, ws: web.WebSocketResponse, stream_api: bool = False):
        super().__init__(grant)
        self.ws = ws
        self.stream_api = stream_api
        self.task_started = False
        self.pace: StreamPace | None = None  # of the audio it sends, from its first chunk
        self.pace_watch: asyncio.Task | None = None

    async def send(self, message_type: str, data: dict) -> None:
        await send_message(self.ws, message_type, data)

    async def deliver(self, message_type: str, data: dict, payload: str) -> None:
        """A broadcast message (`payload` is it as JSON), when this client asked for its kind."""
        if self.streams.wants(message_type):
            await self.ws.send_str(payload)


class RoomPeer(Peer):
    def __init__(self, grant: ControlGrant, controller: TaskController):
        super().__init__(grant)
        self.controller = controller

    async def send(self, message_type: str, data: dict) -> None:
        payload = json.dumps({"message_type": message_type, "data": data}).encode()
        await self.controller.publish_data(payload, self.grant.identity)
