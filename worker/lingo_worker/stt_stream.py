"""Palabra's speech-to-text stream (palabra-ai 2.x `Palabra.stt()`): the control WebSocket opened
with `?api=stt`, which the facade's `/asr/v1/speech-to-text/stream` relays
(webhook/lingo_webhook/palabra_stream.py). The session's task already has the stream's languages
(`language` as the source, `translate_languages` as the targets).

The client sends binary frames of audio (`format` pcm_s16le at `sample_rate`, mono) and nothing
else. The worker answers `transcription` (the speaker's words: partial while they are said, then
final with `is_eos`) and `translated_transcription` (each target's translation, partial when the
task translates partials, then final), each with `segment` {text, start_time, end_time}, whose
text is authoritative, and `delta`, the words added since the segment's last message. Errors and
warnings (AUDIO_STREAM_*) come as in the translation stream. Nothing is synthesized: the stream
turns the task's `speech` option off.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
from aiohttp import WSMsgType, web
from multidict import MultiMapping

from lingo_api.session_tokens import ControlGrant, Permission

from . import protocol
from .audio_output import to_asr_samples
from .control_peers import WebSocketPeer, send_error, websocket_speaker
from .engines.base import ASR_SAMPLE_RATE
from .task import TaskUpdate

if TYPE_CHECKING:
    from .control_api import ControlHub

FORMATS = ("pcm_s16le",)
DEFAULT_SAMPLE_RATE = 16_000  # Palabra's, for the speech-to-text stream
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 48_000
# The pipeline's transcript messages as the stream's: (message_type, final).
TRANSCRIPTS = {
    "partial_transcription": ("transcription", False),
    "validated_transcription": ("transcription", True),
    "partial_translated_transcription": ("translated_transcription", False),
    "translated_transcription": ("translated_transcription", True),
}
PASSED_ON = frozenset({"error", "warning"})


def stream_settings(query: MultiMapping[str]) -> tuple[int, str | None]:
    """(sample rate, the problem in words or None) of the stream's query parameters."""
    audio_format = query.get("format", "pcm_s16le")
    if audio_format not in FORMATS:
        return 0, f"format '{audio_format[:40]}' is not supported; send {' or '.join(FORMATS)}"
    try:
        rate = int(query.get("sample_rate", DEFAULT_SAMPLE_RATE))
    except ValueError:
        rate = 0
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        return 0, f"sample_rate must be a whole number of Hz from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE}"
    return rate, None


class SpeechToTextPeer(WebSocketPeer):
    """Receives the session's broadcasts in the speech-to-text stream's shape."""

    def __init__(self, grant: ControlGrant, ws: web.WebSocketResponse, sample_rate: int):
        super().__init__(grant, ws)
        self.sample_rate = sample_rate
        self._said: dict[tuple[str, str, str], str] = {}  # (kind, transcription_id, language) -> text sent

    async def deliver(self, message_type: str, data: dict, payload: str) -> None:
        if message_type in PASSED_ON:
            await self.ws.send_str(payload)
        elif message_type in TRANSCRIPTS:
            await self.ws.send_str(json.dumps(self.transcript(message_type, data)))

    def transcript(self, message_type: str, data: dict) -> dict:
        kind, final = TRANSCRIPTS[message_type]
        transcription = data["transcription"]
        segment = transcription["segments"][0]
        text, key = transcription["text"], (kind, transcription["transcription_id"], transcription["language"])
        before = self._said.pop(key, "") if final else self._said.get(key, "")
        if not final:
            self._said[key] = text
        return {"message_type": kind, "transcription_id": key[1], "language": key[2], "is_eos": final,
                "segment": {"text": text, "start_time": segment["start"], "end_time": segment["end"]},
                "delta": {"text": text[len(before):].lstrip() if text.startswith(before) else text}}


async def serve_speech_to_text(hub: "ControlHub", ws: web.WebSocketResponse, grant: ControlGrant,
                               query: MultiMapping[str]) -> None:
    rate, problem = stream_settings(query)
    if problem is None and not grant.allows(Permission.WRITE):
        problem = f"a {grant.role.value} token lacks the 'write' permission"
    if problem is None:
        problems = await hub.controller.update_task(TaskUpdate(options={"speech": False}))
        problem = "; ".join(problems) or None
    if problem is not None:
        await send_error(ws, "VALIDATION_ERROR", problem)
        await ws.close()
        return
    peer = SpeechToTextPeer(grant, ws, rate)
    peer.speaker = hub.controller.speaker(websocket_speaker(grant.identity))
    hub.admit(peer)
    try:
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                pcm = np.frombuffer(message.data[: len(message.data) // 2 * 2], dtype="<i2")
                samples = to_asr_samples(pcm, rate)
                if await hub.keep_pace(peer, len(samples) / ASR_SAMPLE_RATE):
                    await peer.speaker.feed(samples)
            elif message.type == WSMsgType.TEXT:
                await peer.send("error", protocol.error(
                    "VALIDATION_ERROR", "the speech-to-text stream takes binary frames of audio only"))
            elif message.type == WSMsgType.ERROR:
                break
    finally:
        hub.release(peer)
