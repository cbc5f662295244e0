"""Palabra's text-to-speech stream (palabra-ai 2.x `Palabra.tts()`): the control WebSocket opened
with `?api=tts`, which the facade's `/tts-api/v1/text-to-speech/stream` relays
(webhook/lingo_webhook/palabra_stream.py). Nothing of it goes into the room.

The client sends `init` first {language, voice_options {voice_id, speed}, output {format pcm|wav,
sample_rate}}, then `text` {text (at most 1024 characters), is_eos, generation_id?, voice_options?}
and `cancel`. Text is gathered per generation; each whole sentence is spoken as soon as it is in,
the rest at `is_eos`. The speech comes back as `audio_chunk` {audio (base64), generation_id,
last_chunk, audio_len (seconds), chunk_generation_delta (ms since the text was complete)} in
pieces of CHUNK_SECONDS, then a `last_chunk` marker once the generation is complete. `cancel`
drops what is gathered and what is still being sent. Palabra's `model`, `deaccent_strength` and
`reset_context` have no counterpart in the engines and are accepted without effect.
"""

from __future__ import annotations

import asyncio
import base64
import io
import re
import secrets
import time
import wave
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web
from multidict import MultiMapping

from lingo_api.session_tokens import ControlGrant, Permission
from lingo_api.untrusted import UntrustedInputError, parse_json

from . import protocol
from .audio_output import to_pcm16
from .control_peers import send_error, send_message
from .task import VOICE_PATTERN

if TYPE_CHECKING:
    from .control_api import ControlHub

INIT_SECONDS = 10
MAX_TEXT_CHARS = 1024  # Palabra's limit per text message
MAX_GATHERED_CHARS = 16 * MAX_TEXT_CHARS  # text not yet spoken, per stream
FORMATS = ("pcm", "wav")
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 48_000
MIN_SPEED, MAX_SPEED = 0.5, 2.0
CHUNK_SECONDS = 0.5
SENTENCE_END = re.compile(r"[.!?…。！？](?=\s|$)")


@dataclass
class Voice:
    language: str
    voice: str | None = None  # None: the engines' own voice for the language
    speed: float = 1.0
    audio_format: str = "pcm"
    sample_rate: int = 24_000


@dataclass
class Generation:
    generation_id: str
    text: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Piece:
    """Text of a generation waiting to be spoken; `last` ends the generation."""

    generation_id: str
    text: str
    voice: Voice
    complete_at: float  # when its text was in (monotonic), for chunk_generation_delta
    last: bool
    epoch: int


class TextToSpeechError(ValueError):
    """Said to the client as an `error` {code: VALIDATION_ERROR, desc}."""


def _voice_options(options, voice: Voice) -> Voice:
    if options is None:
        return voice
    if not isinstance(options, dict):
        raise TextToSpeechError("voice_options must be an object")
    voice_id, speed = options.get("voice_id", voice.voice), options.get("speed", voice.speed)
    if voice_id is not None and (not isinstance(voice_id, str) or not VOICE_PATTERN.fullmatch(voice_id)):
        raise TextToSpeechError("voice_id is a voice name (letters, digits, _+.-, at most 64 characters)")
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not MIN_SPEED <= speed <= MAX_SPEED:
        raise TextToSpeechError(f"speed must be a number from {MIN_SPEED} to {MAX_SPEED}")
    # Palabra's own voice names (default_low, default_high, ...) mean the language's usual voice.
    named = None if voice_id is None or voice_id.startswith("default") else voice_id
    return Voice(voice.language, named, float(speed), voice.audio_format, voice.sample_rate)


def parse_init(data: dict, synthesizes) -> Voice:
    language = data.get("language")
    if not isinstance(language, str) or not synthesizes(language):
        raise TextToSpeechError(f"there is no voice for language '{str(language)[:20]}'")
    output = data.get("output") if isinstance(data.get("output"), dict) else {}
    audio_format = output.get("format", "pcm")
    if audio_format not in FORMATS:
        raise TextToSpeechError(f"output.format must be one of {', '.join(FORMATS)}")
    rate = output.get("sample_rate", 24_000)
    if isinstance(rate, bool) or not isinstance(rate, int) or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise TextToSpeechError(f"output.sample_rate must be a whole number of Hz from {MIN_SAMPLE_RATE} "
                                f"to {MAX_SAMPLE_RATE}")
    return _voice_options(data.get("voice_options"), Voice(language, None, 1.0, audio_format, rate))


def _wav(pcm: bytes, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return out.getvalue()


class TextToSpeechStream:
    def __init__(self, hub: "ControlHub", ws: web.WebSocketResponse, voice: Voice):
        self.hub, self.ws, self.voice = hub, ws, voice
        self.open: Generation | None = None  # the generation text is gathered for
        self.queue: asyncio.Queue[Piece] = asyncio.Queue()
        self.queued_chars = 0
        self.epoch = 0  # bumped by cancel: work of an earlier epoch is dropped

    async def send(self, message_type: str, data: dict) -> None:
        await send_message(self.ws, message_type, data)

    async def on_text(self, data: dict) -> None:
        text, eos = data.get("text"), data.get("is_eos", False)
        if not isinstance(text, str) or not 0 < len(text) <= MAX_TEXT_CHARS:
            raise TextToSpeechError(f"text must be a string of 1 to {MAX_TEXT_CHARS} characters")
        if not isinstance(eos, bool):
            raise TextToSpeechError("is_eos must be true or false")
        generation_id = data.get("generation_id")
        if generation_id is not None and (not isinstance(generation_id, str) or not 0 < len(generation_id) <= 64):
            raise TextToSpeechError("generation_id must be a string of at most 64 characters")
        if self.queued_chars + len(text) > MAX_GATHERED_CHARS:
            raise TextToSpeechError(f"more than {MAX_GATHERED_CHARS} characters are waiting to be spoken; "
                                    "wait for audio or cancel")
        self.voice = _voice_options(data.get("voice_options"), self.voice)
        if self.open is None or (generation_id is not None and generation_id != self.open.generation_id):
            if self.open is not None:  # a new generation closes the one before it
                self._speak(self.open, " ".join(self.open.text), last=True)
            self.open = Generation(generation_id or secrets.token_hex(4))
        self.open.text.append(text)
        gathered = " ".join(self.open.text)
        if eos:
            self._speak(self.open, gathered, last=True)
            self.open = None
        elif ends := list(SENTENCE_END.finditer(gathered)):  # whole sentences go now
            cut = ends[-1].end()
            self._speak(self.open, gathered[:cut], last=False)
            self.open.text = [gathered[cut:].strip()] if gathered[cut:].strip() else []

    def _speak(self, generation: Generation, text: str, last: bool) -> None:
        self.queued_chars += len(text)
        self.queue.put_nowait(Piece(generation.generation_id, text, self.voice, time.monotonic(), last, self.epoch))

    def cancel(self) -> None:
        self.epoch += 1
        self.open = None
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queued_chars = 0

    async def speak_queued(self) -> None:
        """Synthesizes the queue in order and sends each piece's audio."""
        while True:
            piece = await self.queue.get()
            self.queued_chars = max(0, self.queued_chars - len(piece.text))
            if piece.epoch != self.epoch:
                continue
            if piece.text.strip():
                await self._send_speech(piece)
            if piece.last and piece.epoch == self.epoch:
                await self._chunk(piece, b"", None, last=True)

    async def _send_speech(self, piece: Piece) -> None:
        voice = piece.voice
        try:
            speech = await self.hub.controller.synthesize(piece.text, voice.language, voice.voice, voice.speed)
        except Exception as exc:  # an engine's failure is the client's error message, not a dead stream
            await self.send("error", protocol.error("SYNTHESIS_FAILED", str(exc)[:200]))
            return
        samples = to_pcm16(speech.samples, speech.sample_rate, voice.sample_rate)
        pcm = samples.astype("<i2").tobytes()
        if voice.audio_format == "wav":  # one file per piece
            await self._chunk(piece, _wav(pcm, voice.sample_rate), len(samples) / voice.sample_rate)
            return
        step = int(voice.sample_rate * CHUNK_SECONDS) * 2
        for start in range(0, len(pcm), step):
            if piece.epoch != self.epoch:  # cancelled meanwhile
                return
            audio = pcm[start:start + step]
            await self._chunk(piece, audio, len(audio) / 2 / voice.sample_rate)

    async def _chunk(self, piece: Piece, audio: bytes, seconds: float | None, last: bool = False) -> None:
        await self.send("audio_chunk", {
            "audio": base64.b64encode(audio).decode(), "generation_id": piece.generation_id, "last_chunk": last,
            "audio_len": None if seconds is None else round(seconds, 3),
            "chunk_generation_delta": round((time.monotonic() - piece.complete_at) * 1000)})


async def _first_init(ws: web.WebSocketResponse) -> dict:
    try:
        message = await ws.receive(timeout=INIT_SECONDS)
    except asyncio.TimeoutError:
        raise TextToSpeechError(f"send init within {INIT_SECONDS} s") from None
    data = _message(message)
    if data is None or data.get("type") != "init":
        raise TextToSpeechError('the first message must be {"type": "init", "language": ..., ...}')
    return data


def _message(message) -> dict | None:
    """A client frame as its JSON object (Palabra's TTS messages are flat, keyed by `type`)."""
    if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
        return None
    try:
        parsed = parse_json(message.data)
    except UntrustedInputError:
        return None
    return parsed if isinstance(parsed, dict) else None


async def serve_text_to_speech(hub: "ControlHub", ws: web.WebSocketResponse, grant: ControlGrant,
                               _query: MultiMapping[str]) -> None:
    try:
        if not grant.allows(Permission.WRITE):
            raise TextToSpeechError(f"a {grant.role.value} token lacks the 'write' permission")
        stream = TextToSpeechStream(hub, ws, parse_init(await _first_init(ws), hub.controller.synthesizes))
    except TextToSpeechError as exc:
        await send_error(ws, "VALIDATION_ERROR", str(exc))
        await ws.close()
        return
    speaking = hub.background.spawn(stream.speak_queued(), "text-to-speech")
    try:
        async for message in ws:
            if message.type == WSMsgType.ERROR:
                break
            data = _message(message)
            kind = data.get("type") if data else None
            try:
                if kind == "text":
                    await stream.on_text(data)
                elif kind == "cancel":
                    stream.cancel()
                else:
                    raise TextToSpeechError('messages are {"type": "text", "text": ..., "is_eos": ...} '
                                            'or {"type": "cancel"}')
            except TextToSpeechError as exc:
                await stream.send("error", protocol.error("VALIDATION_ERROR", str(exc)))
    finally:
        speaking.cancel()
