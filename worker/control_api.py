"""The control WebSocket (`/control`) and the health endpoints of the worker.

Messages are JSON `{"message_type": ..., "data": {...}}`. A client authenticates with its
session token, either as `?token=` or in a first `authenticate` message, and may then:
  get_task (read) · set_task (write for languages, edit for options only) ·
  pause_task / resume_task / end_task (write).
The worker pushes current_task, partial_transcription, validated_transcription,
translated_transcription, pipeline_timings and error to every authenticated client.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from typing import Protocol

from aiohttp import WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from lingo_api.session_tokens import ControlGrant, InvalidToken, Permission, read_control_grant
from lingo_api.untrusted import MAX_TOKEN_CHARS, UntrustedInputError, parse_json

from . import metrics
from .task import TaskState, TaskUpdate, TranslationTask

log = logging.getLogger("lingo.worker")

AUTH_TIMEOUT_SECONDS = 10
MAX_MESSAGE_BYTES = 64 * 1024


class TaskController(Protocol):
    task: TranslationTask

    async def update_task(self, update: TaskUpdate) -> list[str]: ...

    async def set_state(self, state: TaskState) -> None: ...

    def ready(self) -> tuple[bool, str]: ...


class TokenBook:
    """The session tokens the operator issued; only these, byte for byte, are accepted."""

    def __init__(self, tokens: list[str], room: str):
        self._tokens = [t.encode() for t in tokens]
        self._room = room

    def authenticate(self, token: str) -> ControlGrant:
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken("token was not issued for this session")
        presented = token.encode()
        # Compare against every issued token so the time taken does not depend on which matched.
        matched = False
        for issued in self._tokens:
            matched |= hmac.compare_digest(presented, issued)
        if not matched:
            raise InvalidToken("token was not issued for this session")
        grant = read_control_grant(token)
        if grant.room != self._room:
            raise InvalidToken("token is for another room")
        return grant


class ControlHub:
    def __init__(self, controller: TaskController, tokens: TokenBook):
        self.controller, self.tokens = controller, tokens
        self.clients: dict[web.WebSocketResponse, ControlGrant] = {}

    async def broadcast(self, message_type: str, data: dict) -> None:
        payload = json.dumps({"message_type": message_type, "data": data})
        for ws in list(self.clients):
            try:
                await ws.send_str(payload)
            except (ConnectionError, RuntimeError):
                self.clients.pop(ws, None)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        grant = await self._authenticate(ws, request.query.get("token"))
        if grant is None:
            await ws.close(code=4401, message=b"unauthorized")
            return ws
        self.clients[ws] = grant
        metrics.CONTROL_CLIENTS.inc()
        await _send(ws, "current_task", self.controller.task.model_dump(mode="json"))
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await self._dispatch(ws, grant, message.data)
                elif message.type == WSMsgType.BINARY:
                    await _error(ws, "unsupported_frame", "send JSON text frames")
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            self.clients.pop(ws, None)
            metrics.CONTROL_CLIENTS.dec()
        return ws

    async def _authenticate(self, ws: web.WebSocketResponse, token: str | None) -> ControlGrant | None:
        if not token:
            try:
                message = await ws.receive(timeout=AUTH_TIMEOUT_SECONDS)
            except asyncio.TimeoutError:
                await _error(ws, "unauthorized", "authenticate within 10 s")
                return None
            parsed = _parse(message.data) if message.type == WSMsgType.TEXT else None
            if not parsed or parsed[0] != "authenticate" or not isinstance(parsed[1].get("token"), str):
                await _error(ws, "unauthorized", 'first message must be {"message_type": "authenticate", '
                                                 '"data": {"token": "<session token>"}}')
                return None
            token = parsed[1]["token"]
        try:
            grant = self.tokens.authenticate(token)
        except InvalidToken as exc:
            await _error(ws, "unauthorized", str(exc))
            return None
        await _send(ws, "authenticated", {"identity": grant.identity, "role": grant.role.value,
                                          "permissions": sorted(p.value for p in grant.permissions)})
        return grant

    async def _dispatch(self, ws: web.WebSocketResponse, grant: ControlGrant, raw: str) -> None:
        parsed = _parse(raw)
        if parsed is None:
            await _error(ws, "invalid_message", 'expected JSON {"message_type": "...", "data": {...}}')
            return
        message_type, data = parsed
        if message_type == "get_task":
            if await self._require(ws, grant, Permission.READ):
                await _send(ws, "current_task", self.controller.task.model_dump(mode="json"))
        elif message_type == "set_task":
            try:
                update = TaskUpdate.model_validate(data)
            except ValidationError as exc:
                fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                await _error(ws, "invalid_task", fields)
                return
            if not await self._require(ws, grant, update.required_permission()):
                return
            try:
                problems = await self.controller.update_task(update)
            except ValidationError as exc:
                problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
            if problems:
                await _error(ws, "invalid_task", "; ".join(problems))
                return
            await self.broadcast("current_task", self.controller.task.model_dump(mode="json"))
        elif message_type in ("pause_task", "resume_task", "end_task"):
            if not await self._require(ws, grant, Permission.WRITE):
                return
            state = {"pause_task": TaskState.PAUSED, "resume_task": TaskState.RUNNING, "end_task": TaskState.ENDED}
            if self.controller.task.state == TaskState.ENDED:
                await _error(ws, "task_ended", "the task has ended")
                return
            await self.controller.set_state(state[message_type])
            await self.broadcast("current_task", self.controller.task.model_dump(mode="json"))
        elif message_type == "authenticate":
            await _error(ws, "already_authenticated", "this connection is already authenticated")
        else:
            await _error(ws, "unknown_message_type", f"unknown message_type '{str(message_type)[:40]}'")

    async def _require(self, ws: web.WebSocketResponse, grant: ControlGrant, permission: Permission) -> bool:
        if grant.allows(permission):
            return True
        await _error(ws, "forbidden", f"a {grant.role.value} token lacks the '{permission.value}' permission")
        return False


def _parse(raw) -> tuple[str, dict] | None:
    try:
        message = parse_json(raw)
    except UntrustedInputError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("message_type"), str):
        return None
    data = message.get("data", {})
    return (message["message_type"], data) if isinstance(data, dict) else None


async def _send(ws: web.WebSocketResponse, message_type: str, data: dict) -> None:
    await ws.send_str(json.dumps({"message_type": message_type, "data": data}))


async def _error(ws: web.WebSocketResponse, code: str, message: str) -> None:
    await _send(ws, "error", {"code": code, "message": message})


def build_control_app(hub: ControlHub) -> web.Application:
    app = web.Application()

    async def healthz(_):
        return web.json_response({"ok": True})

    async def readyz(_):
        ready, why = hub.controller.ready()
        return web.json_response({"ok": ready, "reason": why}, status=200 if ready else 503)

    app.router.add_get("/control", hub.handle)
    app.router.add_get("/healthz", healthz)
    async def metrics_endpoint(_):
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    return app
