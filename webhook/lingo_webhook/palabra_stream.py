"""Palabra's current streaming API (palabra-ai 2.x): one WebSocket per stream, authorized by an
API key, no REST call first.

    GET /streaming-api/{random_hash}/v1/speech-to-speech/stream?token=<API key>   translation
    GET /asr/v1/speech-to-text/stream?token=<API key>&language=en&...            speech to text
    GET /tts-api/v1/text-to-speech/stream?token=<API key>                        text to speech

The key is checked before the upgrade: a wrong one is an HTTP 401, which the SDK raises as its
`SessionError`. The stream's first message must be Palabra's `set_task`; its languages make the
session, a StreamingSession like any other (the client's quota counts it; a warm pool's worker
is claimed when one serves those languages). The relay then opens the worker's control
WebSocket as the session's publisher in the 2.x dialect (`?api=stream`,
worker/lingo_worker/control_api.py), hands it the set_task and relays frames both ways. When
either side closes (after `end_of_stream`, or the client leaving) the session is deleted. A
stream's session has no LiveKit room (`spec.room: false`): all of its audio is on the WebSocket.
`{random_hash}` only spreads connections across Palabra's servers; any value is accepted.

The speech-to-text stream takes its languages from the query (`language`, `translate_languages`;
its session synthesizes nothing), the text-to-speech stream from its first message (`init`, whose
language is a session with no targets); each is relayed to the worker's stream of that kind
(`?api=stt` / `?api=tts`: worker/lingo_worker/stt_stream.py, worker/lingo_worker/tts_stream.py).
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
from aiohttp import WSMsgType, web
from pydantic import ValidationError

from lingo_api import resources as r
from lingo_api.languages import synthesis_problem
from lingo_api.session_spec import SessionSpec
from lingo_api.untrusted import UntrustedInputError, describe_validation_error, parse_control_message, parse_json

from .client_address import peer_of
from .control_proxy import WORKER_WAIT_SECONDS, relay, worker_endpoint
from .errors import ApiError

log = logging.getLogger("lingo.webhook")

SPEECH_TO_SPEECH_PATH = "/streaming-api/{random_hash}/v1/speech-to-speech/stream"
SPEECH_TO_TEXT_PATH = "/asr/v1/speech-to-text/stream"
TEXT_TO_SPEECH_PATH = "/tts-api/v1/text-to-speech/stream"
FIRST_MESSAGE_SECONDS = 10


class StreamRefused(Exception):
    """Said to the client as a control `error` {code, desc}, then the stream is closed."""

    def __init__(self, code: str, desc: str):
        super().__init__(desc)
        self.code, self.desc = code, desc


def _spec(source, targets: list) -> SessionSpec:
    try:
        # All of a stream's audio goes over its WebSocket: its session needs no LiveKit room.
        return SessionSpec(publisher_count=1, subscriber_count=0, source_language=source, target_languages=targets,
                           room=False)
    except ValidationError as exc:
        raise StreamRefused("VALIDATION_ERROR", describe_validation_error(exc)) from None


def _session_spec(set_task: dict) -> SessionSpec:
    """The languages of Palabra's set_task as a session spec (the worker reads the rest)."""
    pipeline = set_task.get("pipeline") if isinstance(set_task.get("pipeline"), dict) else {}
    transcription = pipeline.get("transcription") if isinstance(pipeline.get("transcription"), dict) else {}
    translations = pipeline.get("translations") if isinstance(pipeline.get("translations"), list) else []
    source = transcription.get("source_language")
    targets = [t.get("target_language") for t in translations if isinstance(t, dict)]
    if source == "auto":
        raise StreamRefused("VALIDATION_ERROR", "source_language 'auto' is not supported: name the language spoken")
    if not isinstance(source, str) or not targets:
        raise StreamRefused("VALIDATION_ERROR", "set_task needs pipeline.transcription.source_language and "
                                                "pipeline.translations[].target_language")
    return _spec(source, targets)


def _speech_to_text_spec(query) -> SessionSpec:
    """The speech-to-text stream's languages, from its query parameters."""
    source = query.get("language")
    if source in (None, "", "auto"):
        raise StreamRefused("VALIDATION_ERROR", "language is required (automatic detection is not supported): "
                                                "name the language spoken, e.g. language=en")
    targets = [t for t in query.get("translate_languages", "").split(",") if t]
    return _spec(source, targets)


async def _first_message(ws: web.WebSocketResponse, what: str) -> tuple[str, object]:
    """(the raw frame, its JSON) of the client's opening message."""
    try:
        message = await ws.receive(timeout=FIRST_MESSAGE_SECONDS)
    except asyncio.TimeoutError:
        raise StreamRefused("VALIDATION_ERROR", f"send {what} within {FIRST_MESSAGE_SECONDS} s") from None
    if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
        raise StreamRefused("VALIDATION_ERROR", f"the stream closed before {what}")
    raw = message.data if message.type == WSMsgType.TEXT else message.data.decode("utf-8", "replace")
    try:
        return raw, parse_json(raw)
    except UntrustedInputError:
        return raw, None


async def _first_set_task(ws: web.WebSocketResponse) -> tuple[str, dict]:
    """(the raw frame, its data) of the client's opening set_task."""
    raw, _ = await _first_message(ws, "set_task")
    parsed = parse_control_message(raw)
    if parsed is None or parsed[0] != "set_task":
        raise StreamRefused("VALIDATION_ERROR", 'the first message must be {"message_type": "set_task", '
                                                '"data": <task>}')
    return raw, parsed[1]


async def _worker_of(store, session_id: str) -> str:
    """The worker endpoint once the session's worker is ready (a claimed pool worker: at once)."""
    deadline = time.monotonic() + WORKER_WAIT_SECONDS
    while True:
        session = store.cache.get(session_id)
        if session is not None and (endpoint := worker_endpoint(session)):
            return endpoint
        if time.monotonic() > deadline:
            raise StreamRefused("WORKER_NOT_READY", "the translation worker did not start in time; retry")
        await asyncio.sleep(0.1)


async def _refuse(ws: web.WebSocketResponse, code: str, desc: str) -> None:
    if not ws.closed:
        try:
            await ws.send_json({"message_type": "error", "data": {"code": code, "desc": desc}})
        except (ConnectionError, RuntimeError):
            pass


async def _opening_of_speech_to_speech(ws: web.WebSocketResponse, _query) -> tuple[SessionSpec, list[str]]:
    raw, task = await _first_set_task(ws)
    return _session_spec(task), [raw]


async def _opening_of_speech_to_text(_ws: web.WebSocketResponse, query) -> tuple[SessionSpec, list[str]]:
    return _speech_to_text_spec(query), []


async def _opening_of_text_to_speech(ws: web.WebSocketResponse, _query) -> tuple[SessionSpec, list[str]]:
    raw, init = await _first_message(ws, "init")
    if not isinstance(init, dict) or init.get("type") != "init" or not isinstance(init.get("language"), str):
        raise StreamRefused("VALIDATION_ERROR", 'the first message must be {"type": "init", "language": ..., ...}')
    if problem := synthesis_problem(init["language"]):
        raise StreamRefused("VALIDATION_ERROR", problem)
    return _spec(init["language"], []), [raw]


# Per stream: how its opening makes the session, and the worker stream (`?api=`) it is relayed to.
STREAMS = {
    "stream": _opening_of_speech_to_speech,
    "stt": _opening_of_speech_to_text,
    "tts": _opening_of_text_to_speech,
}
# The speech-to-text stream's audio settings, passed on to the worker (which checks them).
WORKER_QUERY = {"stt": ("format", "sample_rate")}


def stream_handler(api: str):
    async def handle(request: web.Request) -> web.StreamResponse:
        return await _serve(request, api)
    return handle


async def _serve(request: web.Request, api: str) -> web.StreamResponse:
    key = request.query.get("token", "")
    client = await request.app["clients"].authenticate_key(key, peer_of(request)) if key else None
    if client is None:
        raise ApiError(401, "unauthorized", "a valid API key is required as ?token=")
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=r.CONTROL_MESSAGE_MAX_BYTES)
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "websocket_required", "this endpoint speaks WebSocket only")
    await ws.prepare(request)
    store = request.app["store"]
    session_id = None
    try:
        spec, opening = await STREAMS[api](ws, request.query)
        try:
            summary, tokens = await store.create_for(client, spec)
        except ApiError as exc:
            raise StreamRefused(exc.code.upper(), exc.message) from None
        session_id = summary["session_id"]
        endpoint = await _worker_of(store, session_id)
        http: aiohttp.ClientSession = request.app["http"]
        params = {"token": tokens["publisher"][0], "api": api,
                  **{k: request.query[k] for k in WORKER_QUERY.get(api, ()) if k in request.query}}
        try:
            upstream = await http.ws_connect(f"ws://{endpoint}{r.WORKER_CONTROL_PATH}", params=params,
                                             heartbeat=30, max_msg_size=r.CONTROL_MESSAGE_MAX_BYTES)
        except (aiohttp.ClientError, OSError):
            raise StreamRefused("WORKER_UNREACHABLE", "could not reach the translation worker; retry") from None
        try:
            for raw in opening:
                await upstream.send_str(raw)
            await relay(ws, upstream)
        except (ConnectionError, aiohttp.ClientError):
            raise StreamRefused("WORKER_UNREACHABLE", "the translation worker closed the stream; retry") from None
        finally:
            await upstream.close()
    except StreamRefused as refused:
        await _refuse(ws, refused.code, refused.desc)
    except Exception as exc:  # said to the client and logged with its reason, never a silent close
        log.error("client %s: stream failed: %s: %s", client.client_id, type(exc).__name__, exc)
        await _refuse(ws, "INTERNAL_ERROR", "the stream failed on the server; retry")
    finally:
        await ws.close()
        if session_id is not None:
            await store.delete(session_id)
            log.info("client %s: stream of session %s ended; session deleted", client.client_id, session_id)
    return ws
