"""The worker's control API, over a WebSocket (`/control`, served by worker/lingo_worker/http_app.py)
and over LiveKit data packets. Messages follow Palabra's protocol (worker/lingo_worker/protocol.py).

Messages are JSON `{"message_type": ..., "data": {...}}`, in text or binary frames. On the
WebSocket a client authenticates with its session token (`?token=` or a first `authenticate`
message); in the room, LiveKit has already authenticated the sender, whose identity maps to
the token issued for it. Then:
  get_task (read) · set_task (write for languages or audio over the WebSocket, edit for options
  only) · pause_task / resume_task / end_task / flush_task (write) · input_audio_data and eos
  (write, a WebSocket whose set_task chose `input_stream.source.type = "ws"`) · tts_task and
  interrupt_task (write).
The worker sends current_task, task_status (tts_task's `queued`), partial/validated/translated_transcription,
partial_translated_transcription (when the task asks), pipeline_timings, tts_buffer_stats,
output_audio_data (WebSocket clients that asked for it, as the track plays it), warning, eos and
error `{"code", "desc"}`.

A WebSocket opened with `?api=stream` speaks Palabra's current streaming API (palabra-ai 2.x; the
facade's stream endpoint, webhook/lingo_webhook/palabra_stream.py, opens it so): no
`authenticated` or unasked `current_task`, `task_status` acknowledgements of set_task and
pause_task (a set_task while paused resumes), and end_task finishes the client's audio, sends
`end_of_stream` and closes. `?api=stt` and `?api=tts` are Palabra's speech-to-text and
text-to-speech streams (worker/lingo_worker/stt_stream.py, worker/lingo_worker/tts_stream.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import secrets
import zlib
from typing import Protocol

import numpy as np
from aiohttp import WSMsgType, web
from pydantic import ValidationError

from lingo_api import resources as r
from lingo_api.session_tokens import ControlGrant, InvalidToken, Permission, read_control_grant
from lingo_api.untrusted import MAX_TOKEN_CHARS, describe_validation_error, parse_control_message

from . import metrics
from . import protocol
from .audio_output import to_asr_samples, to_pcm16
from .background import BackgroundTasks
from .control_peers import Peer, RoomPeer, WebSocketPeer, send_error, websocket_speaker
from .early_data import EarlyData
from .engines.base import ASR_SAMPLE_RATE
from .protocol import TaskMessageError
from .stream_pace import MESSAGES as PACE_MESSAGES, REFUSED as PACE_REFUSED, TOO_FAST, StreamPace
from .stt_stream import serve_speech_to_text
from .task import TaskState, TranslationTask
from .tts_stream import serve_text_to_speech

log = logging.getLogger("lingo.worker")

AUTH_TIMEOUT_SECONDS = 10
MAX_TTS_CHARS = 1024  # Palabra's limit on a tts_task's text
INVALID_TOKEN = "token was not issued for this session"
# eos waits at most this long for the translation of the client's last words to play out.
EOS_DRAIN_SECONDS = 30
# `?api=` values whose WebSocket is one of Palabra's single-purpose streams, each with its own loop.
STREAMS = {"stt": serve_speech_to_text, "tts": serve_text_to_speech}


class TaskController(Protocol):
    task: TranslationTask

    async def update_task(self, update, ignored_fields: list[str] | None = None) -> list[str]: ...

    async def set_state(self, state: TaskState) -> None: ...

    def ready(self) -> tuple[bool, str]: ...

    async def wait_ready(self, timeout: float) -> tuple[bool, str]: ...

    def speaker(self, identity: str): ...

    def flush(self) -> None: ...

    async def drained(self) -> None: ...

    async def speak(self, text: str, language: str, translate: bool, transcription_id: str) -> None: ...

    def interrupt(self, languages: list[str] | None) -> None: ...

    async def publish_data(self, payload: bytes, identity: str | None = None) -> None: ...

    def synthesizes(self, language: str) -> bool: ...

    async def synthesize(self, text: str, language: str, voice: str | None, tempo: float): ...


class TokenBook:
    """The session tokens the operator issued; only these, byte for byte, are accepted."""

    def __init__(self, tokens: list[str], room: str):
        self._tokens = [t.encode() for t in tokens]
        self._room = room
        # Participants in the room are who LiveKit says they are: their identity is their token's.
        self.by_identity: dict[str, ControlGrant] = {}
        for token in tokens:
            try:
                grant = read_control_grant(token)
            except InvalidToken:
                continue
            self.by_identity[grant.identity] = grant

    def authenticate(self, token: str) -> ControlGrant:
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken(INVALID_TOKEN)
        presented = token.encode()
        # Compare against every issued token so the time taken does not depend on which matched.
        matched = False
        for issued in self._tokens:
            matched |= hmac.compare_digest(presented, issued)
        if not matched:
            raise InvalidToken(INVALID_TOKEN)
        grant = read_control_grant(token)
        if grant.room != self._room:
            raise InvalidToken("token is for another room")
        return grant


class ControlHub:
    def __init__(self, controller: TaskController, tokens: TokenBook):
        self.controller, self.tokens = controller, tokens
        self.clients: set[WebSocketPeer] = set()
        self.background = BackgroundTasks()  # awaited when the worker exits (worker/lingo_worker/__main__.py)
        self.early_data = EarlyData(self._dispatch_as, self.background.spawn)

    async def broadcast(self, message_type: str, data: dict) -> None:
        """To every WebSocket client and, as one data packet, to everyone in the room."""
        payload = json.dumps({"message_type": message_type, "data": data})
        for peer in list(self.clients):
            try:
                await peer.deliver(message_type, data, payload)
            except (ConnectionError, RuntimeError):
                self.clients.discard(peer)
        try:
            await self.controller.publish_data(payload.encode())
        except Exception:  # not in the room right now: WebSocket clients still got it
            pass

    async def speech(self, language: str, transcription_id: str, samples: np.ndarray, sample_rate: int,
                     last: bool) -> None:
        """A chunk of translated speech, as the track plays it, to the WebSocket clients that asked
        for audio over the socket (worker/lingo_worker/audio_output.py paces it)."""
        for peer in list(self.clients):
            if not peer.streams.audio_out_over_ws:
                continue
            rate = peer.streams.output_rate
            pcm = to_pcm16(samples, sample_rate, rate)
            if peer.streams.output_channels == 2:
                pcm = np.repeat(pcm, 2)
            chunk = zlib.compress(pcm.tobytes()) if peer.streams.output_zlib else pcm.tobytes()
            try:
                await peer.send("output_audio_data", protocol.output_audio(chunk, language, transcription_id, last))
            except (ConnectionError, RuntimeError):
                self.clients.discard(peer)

    # -- the WebSocket -----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=r.CONTROL_MESSAGE_MAX_BYTES)
        await ws.prepare(request)
        api = request.query.get("api", "")
        stream_api = api == "stream"
        grant = await self._authenticate(ws, request.query.get("token"), announce=not (stream_api or api in STREAMS))
        if grant is None:
            await ws.close(code=4401, message=b"unauthorized")
            return ws
        if api in STREAMS:  # speech-to-text or text-to-speech: a loop of its own
            await STREAMS[api](self, ws, grant, request.query)
            return ws
        peer = WebSocketPeer(grant, ws, stream_api)
        self.admit(peer)
        if not stream_api:
            await peer.send("current_task", self.current_task())
        try:
            async for message in ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await self.dispatch(peer, message.data)
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            self.release(peer)
        return ws

    def admit(self, peer: WebSocketPeer) -> None:
        """A WebSocket client from now on receives the session's broadcasts."""
        self.clients.add(peer)
        metrics.CONTROL_CLIENTS.inc()

    def release(self, peer: WebSocketPeer) -> None:
        """A WebSocket client left: what it said before it left is still translated."""
        self.clients.discard(peer)
        metrics.CONTROL_CLIENTS.dec()
        if peer.pace_watch is not None:
            peer.pace_watch.cancel()
        if peer.speaker is not None:
            speaker, peer.speaker = peer.speaker, None
            self.background.spawn(speaker.close(), "last-words-websocket")

    async def _authenticate(self, ws: web.WebSocketResponse, token: str | None,
                            announce: bool = True) -> ControlGrant | None:
        if not token:
            try:
                message = await ws.receive(timeout=AUTH_TIMEOUT_SECONDS)
            except asyncio.TimeoutError:
                await send_error(ws, "UNAUTHORIZED", "authenticate within 10 s")
                return None
            parsed = parse_control_message(message.data) if message.type in (WSMsgType.TEXT, WSMsgType.BINARY) else None
            if not parsed or parsed[0] != "authenticate" or not isinstance(parsed[1].get("token"), str):
                await send_error(ws, "UNAUTHORIZED", 'first message must be {"message_type": "authenticate", '
                                                      '"data": {"token": "<session token>"}}')
                return None
            token = parsed[1]["token"]
        try:
            grant = self.tokens.authenticate(token)
        except InvalidToken as exc:
            await send_error(ws, "UNAUTHORIZED", str(exc))
            return None
        if announce:
            await ws.send_str(json.dumps({"message_type": "authenticated", "data": {
                "identity": grant.identity, "role": grant.role.value,
                "permissions": sorted(p.value for p in grant.permissions)}}))
        return grant

    # -- the room ----------------------------------------------------------------------------

    async def handle_data(self, identity: str, payload: bytes) -> None:
        """A data packet from a participant: a control message from that participant's token.
        An identity of "" is a participant the room has not announced yet: held until it is."""
        if not identity:
            self.early_data.hold(payload)
            return
        if identity not in self.tokens.by_identity:
            return  # not a session client (another worker, a server SDK): not ours to answer
        if not self.early_data.keep_order(identity, payload):
            await self._dispatch_as(identity, payload)

    def participant_joined(self, identity: str) -> None:
        if identity in self.tokens.by_identity:
            self.early_data.joined(identity)

    async def _dispatch_as(self, identity: str, payload: bytes) -> None:
        await self.dispatch(RoomPeer(self.tokens.by_identity[identity], self.controller), payload)

    # -- messages ----------------------------------------------------------------------------

    def current_task(self) -> dict:
        return self.controller.task.model_dump(mode="json")

    async def dispatch(self, peer: Peer, raw: str | bytes) -> None:
        parsed = parse_control_message(raw)
        if parsed is None:
            await peer.send("error", protocol.error("INVALID_MESSAGE",
                                                    'expected JSON {"message_type": "...", "data": {...}}'))
            return
        message_type, data = parsed
        handler = {
            "get_task": self._get_task, "set_task": self._set_task, "pause_task": self._change_state,
            "resume_task": self._change_state, "end_task": self._change_state,
            "input_audio_data": self._input_audio, "eos": self._end_of_stream, "flush_task": self._flush,
            "tts_task": self._tts_task, "interrupt_task": self._interrupt,
        }.get(message_type)
        if message_type == "authenticate":
            await peer.send("error", protocol.error("ALREADY_AUTHENTICATED", "this connection is already authenticated"))
        elif handler is None:
            await peer.send("error", protocol.error("UNKNOWN_MESSAGE_TYPE",
                                                    f"unknown message_type '{str(message_type)[:40]}'"))
        else:
            try:
                await handler(peer, message_type, data)
            except Exception as exc:  # the client hears of it and the connection stays; never a dead socket
                log.error("%s from %s failed: %s: %s", message_type, peer.grant.identity, type(exc).__name__, exc)
                try:
                    await peer.send("error", protocol.error("INTERNAL_ERROR", f"{message_type} failed on the worker"))
                except Exception:
                    pass

    async def _require(self, peer: Peer, permission: Permission) -> bool:
        if peer.grant.allows(permission):
            return True
        await peer.send("error", protocol.error(
            "FORBIDDEN", f"a {peer.grant.role.value} token lacks the '{permission.value}' permission"))
        return False

    async def _get_task(self, peer: Peer, _type: str, _data: dict) -> None:
        if await self._require(peer, Permission.READ):
            await peer.send("current_task", self.current_task())

    async def _set_task(self, peer: Peer, _type: str, data: dict) -> None:
        try:
            request = protocol.parse_set_task(data)
        except (TaskMessageError, ValidationError) as exc:
            await peer.send("error", protocol.error("VALIDATION_ERROR", _describe(exc)))
            return
        audio_over_ws = request.streams is not None and request.streams.audio_in_over_ws
        if audio_over_ws and not isinstance(peer, WebSocketPeer):
            await peer.send("error", protocol.error("VALIDATION_ERROR", "audio over the WebSocket needs the WebSocket"))
            return
        needed = request.update.required_permission()
        if audio_over_ws:
            needed = Permission.WRITE  # speaking is a publisher's right
        if not await self._require(peer, needed):
            return
        try:
            problems = await self.controller.update_task(request.update, request.ignored_fields)
        except ValidationError as exc:
            problems = [_describe(exc)]
        if problems:
            await peer.send("error", protocol.error("VALIDATION_ERROR", "; ".join(problems)))
            return
        if request.streams is not None:
            peer.streams = request.streams
            if request.streams.audio_in_over_ws and peer.speaker is None:
                peer.speaker = self.controller.speaker(websocket_speaker(peer.grant.identity))
        if peer.stream_api:
            await self._acknowledge_set_task(peer)
        await self.broadcast("current_task", self.current_task())  # the asking client included

    async def _acknowledge_set_task(self, peer: WebSocketPeer) -> None:
        """Palabra 2.x: set_task is answered with task_status; one sent while paused resumes."""
        if not peer.task_started:
            event, peer.task_started = "started", True
        elif self.controller.task.state == TaskState.PAUSED:
            await self.controller.set_state(TaskState.RUNNING)
            event = "resumed"
        else:
            event = "updated"
        await peer.send("task_status", protocol.task_status("set_task", event, self.controller.task.state.value))

    async def _change_state(self, peer: Peer, message_type: str, _data: dict) -> None:
        if not await self._require(peer, Permission.WRITE):
            return
        if self.controller.task.state == TaskState.ENDED:
            await peer.send("error", protocol.error("TASK_ENDED", "the task has ended"))
            return
        if peer.stream_api and message_type == "end_task":
            await self._end_stream(peer)
            return
        state = {"pause_task": TaskState.PAUSED, "resume_task": TaskState.RUNNING, "end_task": TaskState.ENDED}
        await self.controller.set_state(state[message_type])
        if peer.stream_api and message_type == "pause_task":
            await peer.send("task_status", protocol.task_status("pause_task", "paused", TaskState.PAUSED.value))
        await self.broadcast("current_task", self.current_task())
        if message_type == "end_task":
            await self.broadcast("eos", {})

    async def _input_audio(self, peer: Peer, _type: str, data: dict) -> None:
        if peer.speaker is None:
            await peer.send("error", protocol.error(
                "VALIDATION_ERROR", 'send set_task with input_stream.source.type "ws" before input_audio_data'))
            return
        try:
            pcm = np.frombuffer(base64.b64decode(str(data.get("data", "")), validate=True), dtype="<i2")
        except (binascii.Error, ValueError):
            await peer.send("error", protocol.error("VALIDATION_ERROR", "data.data must be base64 of pcm_s16le"))
            return
        channels = peer.streams.input_channels
        if channels == 2:
            pcm = pcm[: len(pcm) // 2 * 2].reshape(-1, 2).mean(axis=1)
        samples = to_asr_samples(pcm, peer.streams.input_rate)
        if isinstance(peer, WebSocketPeer) and not await self.keep_pace(peer, len(samples) / ASR_SAMPLE_RATE):
            return
        await peer.speaker.feed(samples)

    async def keep_pace(self, peer: WebSocketPeer, seconds: float) -> bool:
        """Palabra's AUDIO_STREAM_* warnings (worker/lingo_worker/stream_pace.py); False when the
        chunk is too far ahead of real time and is dropped."""
        if peer.pace is None:
            peer.pace = StreamPace()
            peer.pace_watch = self.background.spawn(self._watch_for_stall(peer), "audio-stall-watch")
        if peer.pace.refuses(seconds):
            if peer.pace.refused_notice():
                await peer.send("error", protocol.error(TOO_FAST, PACE_REFUSED))
            return False
        if code := peer.pace.audio(seconds):
            await peer.send("warning", protocol.warning(code, PACE_MESSAGES[code]))
        return True

    async def _watch_for_stall(self, peer: WebSocketPeer) -> None:
        while not peer.ws.closed and peer.speaker is not None:
            await asyncio.sleep(1.0)
            if (code := peer.pace.check_stalled()) and self.controller.task.state == TaskState.RUNNING:
                try:
                    await peer.send("warning", protocol.warning(code, PACE_MESSAGES[code]))
                except (ConnectionError, RuntimeError):  # the client went away meanwhile
                    return

    async def _flush(self, peer: Peer, _type: str, _data: dict) -> None:
        """Palabra's flush_task: the unit in progress is translated now, without waiting for the
        speaker to pause (the sender's own speech over this socket, else every speaker's)."""
        if not await self._require(peer, Permission.WRITE):
            return
        if peer.speaker is not None:
            peer.speaker.flush()
            return
        self.controller.flush()
        for client in self.clients:
            if client.speaker is not None:
                client.speaker.flush()

    async def _tts_task(self, peer: Peer, _type: str, data: dict) -> None:
        """Palabra's tts_task {text, language, translate_text}: acknowledged at once with
        task_status `queued` and the transcription_id its transcript and audio will carry."""
        if not await self._require(peer, Permission.WRITE):
            return
        text, language, translate = data.get("text"), data.get("language"), data.get("translate_text", False)
        task = self.controller.task
        if not isinstance(text, str) or not 0 < len(text.strip()) <= MAX_TTS_CHARS:
            problem = f"text must be a string of 1 to {MAX_TTS_CHARS} characters"
        elif not isinstance(translate, bool):
            problem = "translate_text must be true or false"
        elif translate and language != task.source_language:
            problem = f"with translate_text, language must be the task's source language ({task.source_language})"
        elif not translate and language not in task.target_languages:
            problem = f"language must be one of the task's target languages ({', '.join(task.target_languages)})"
        else:
            problem = None
        if problem:
            await peer.send("error", protocol.error("VALIDATION_ERROR", problem))
            return
        transcription_id = f"tts-{secrets.token_hex(8)}"
        await peer.send("task_status", {**protocol.task_status("tts_task", "queued", task.state.value),
                                         "transcription_id": transcription_id})
        self.background.spawn(self.controller.speak(text, language, translate, transcription_id), "tts-task")

    async def _interrupt(self, peer: Peer, _type: str, data: dict) -> None:
        """Palabra's interrupt_task {languages: [...] | ["global"], pause_task}: the translation's
        speech stops now on those tracks (global: and the speakers' phrases in progress are
        dropped, never translated); with pause_task the task pauses too."""
        if not await self._require(peer, Permission.WRITE):
            return
        languages = data.get("languages", ["global"])
        if not isinstance(languages, list) or not all(isinstance(language, str) for language in languages):
            await peer.send("error", protocol.error("VALIDATION_ERROR", 'languages must be a list like ["es"] or ["global"]'))
            return
        every = "global" in languages
        self.controller.interrupt(None if every else languages)
        if every:  # the phrase still being said is dropped too, here for audio over the WebSocket
            for client in self.clients:
                if client.speaker is not None:
                    client.speaker.drop_phrase()
        if data.get("pause_task") is True and self.controller.task.state == TaskState.RUNNING:
            await self.controller.set_state(TaskState.PAUSED)
            await peer.send("task_status", protocol.task_status("interrupt_task", "paused", TaskState.PAUSED.value))
            await self.broadcast("current_task", self.current_task())

    async def _end_of_stream(self, peer: Peer, _type: str, _data: dict) -> None:
        """The client's audio has ended: translate what is left, let it play out, then answer eos."""
        await self._finish_audio(peer, reopen=True)
        await peer.send("eos", {})

    async def _end_stream(self, peer: WebSocketPeer) -> None:
        """Palabra 2.x's end_task: no more audio; the tail is translated and played, then
        end_of_stream, and the server closes the stream."""
        await self._finish_audio(peer, reopen=False)
        await peer.send("end_of_stream", {})
        await peer.ws.close()

    async def _finish_audio(self, peer: Peer, reopen: bool) -> None:
        if peer.speaker is None:
            return
        speaker, peer.speaker = peer.speaker, None
        await speaker.close()
        try:
            await asyncio.wait_for(self.controller.drained(), timeout=EOS_DRAIN_SECONDS)
        except TimeoutError:
            pass
        if reopen and peer.streams.audio_in_over_ws:
            peer.speaker = self.controller.speaker(websocket_speaker(peer.grant.identity))


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return describe_validation_error(exc)
    return str(exc)

