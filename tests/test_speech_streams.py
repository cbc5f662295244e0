"""Palabra's speech-to-text and text-to-speech streams on the worker, message by message: bad input
is an `error` that names the problem, never a dead stream. The SDK's own runs against the whole
stack are in tests/test_palabra_sdk_2.py; here the worker's stream handlers are served alone, with
a synthesizer that makes a tone (the engines are not what is tested)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import MultiDict

from lingo_api.session_tokens import Permission, Role
from lingo_worker.background import BackgroundTasks
from lingo_worker.engines.base import Synthesized
from lingo_worker.stt_stream import SpeechToTextPeer, stream_settings
from lingo_worker.tts_stream import CHUNK_SECONDS, serve_text_to_speech


class Grant:
    role, identity = Role.PUBLISHER, "publisher-0"

    def allows(self, permission: Permission) -> bool:
        return True


class ToneSynthesizer:
    """A controller's synthesis: 0.1 s of tone per word at 16 kHz."""

    def synthesizes(self, language: str) -> bool:
        return language == "es"

    async def synthesize(self, text: str, language: str, voice, tempo: float) -> Synthesized:
        return Synthesized(np.full(1600 * len(text.split()), 1000, dtype=np.int16), 16000)


class Hub:
    controller = ToneSynthesizer()

    def __init__(self):
        self.background = BackgroundTasks()


@pytest.fixture
async def tts():
    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await serve_text_to_speech(Hub(), ws, Grant(), request.query)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


async def receive(ws) -> dict:
    return json.loads((await ws.receive(timeout=5)).data)


INIT = {"type": "init", "language": "es", "voice_options": {"voice_id": "default_low"},
        "output": {"format": "pcm", "sample_rate": 24000}}


async def test_a_generation_comes_back_in_chunks_then_a_last_chunk_marker(tts):
    async with tts.ws_connect("/") as ws:
        await ws.send_json(INIT)
        await ws.send_json({"type": "text", "text": "uno dos tres cuatro cinco seis siete ocho", "is_eos": False,
                            "generation_id": "g1"})
        await ws.send_json({"type": "text", "text": "nueve diez", "is_eos": True, "generation_id": "g1"})
        audio, seconds = b"", 0.0
        while True:
            message = await receive(ws)
            assert message["message_type"] == "audio_chunk", message
            chunk = message["data"]
            assert chunk["generation_id"] == "g1"
            if chunk["last_chunk"]:
                assert chunk["audio"] == "" and chunk["audio_len"] is None
                break
            audio += base64.b64decode(chunk["audio"])
            seconds += chunk["audio_len"]
            assert chunk["audio_len"] <= CHUNK_SECONDS
        assert len(audio) == 24000 * 2 * 1.0  # ten words, 0.1 s each, at the asked 24 kHz
        assert seconds == pytest.approx(1.0)


async def test_sentences_are_spoken_before_the_end_of_the_generation(tts):
    async with tts.ws_connect("/") as ws:
        await ws.send_json(INIT)
        await ws.send_json({"type": "text", "text": "Hola a todos. Y luego", "is_eos": False})
        first = await receive(ws)  # the whole sentence, without waiting for is_eos
        assert first["message_type"] == "audio_chunk" and not first["data"]["last_chunk"]
        assert len(base64.b64decode(first["data"]["audio"])) == 24000 * 2 * 0.3


@pytest.mark.parametrize("init, problem", [
    ({"type": "text", "text": "hola"}, "first message must be"),
    ({**INIT, "language": "de"}, "no voice for language 'de'"),
    ({**INIT, "output": {"format": "mp3"}}, "output.format must be one of pcm, wav"),
    ({**INIT, "output": {"sample_rate": 1}}, "output.sample_rate must be"),
    ({**INIT, "voice_options": {"speed": 9}}, "speed must be a number from 0.5 to 2.0"),
    ({**INIT, "voice_options": {"voice_id": "../../etc"}}, "voice_id is a voice name"),
])
async def test_a_bad_init_is_a_validation_error_and_the_stream_closes(tts, init, problem):
    async with tts.ws_connect("/") as ws:
        await ws.send_json(init)
        message = await receive(ws)
        assert message["message_type"] == "error" and message["data"]["code"] == "VALIDATION_ERROR"
        assert problem in message["data"]["desc"], message
        assert (await ws.receive(timeout=5)).type.name in ("CLOSE", "CLOSED", "CLOSING")


@pytest.mark.parametrize("text, problem", [
    ({"type": "text", "text": ""}, "text must be a string of 1 to 1024 characters"),
    ({"type": "text", "text": "x" * 1025}, "text must be a string of 1 to 1024 characters"),
    ({"type": "text", "text": "hola", "is_eos": "yes"}, "is_eos must be true or false"),
    ({"type": "speak"}, 'messages are {"type": "text"'),
])
async def test_a_bad_text_message_is_an_error_and_the_stream_goes_on(tts, text, problem):
    async with tts.ws_connect("/") as ws:
        await ws.send_json(INIT)
        await ws.send_json(text)
        message = await receive(ws)
        assert message["message_type"] == "error" and problem in message["data"]["desc"], message
        await ws.send_json({"type": "text", "text": "hola", "is_eos": True})
        assert (await receive(ws))["message_type"] == "audio_chunk"


async def test_cancel_drops_what_waits_to_be_spoken(tts):
    async with tts.ws_connect("/") as ws:
        await ws.send_json(INIT)
        await ws.send_json({"type": "text", "text": "esto no se dice", "is_eos": False})
        await ws.send_json({"type": "cancel"})
        await ws.send_json({"type": "text", "text": "hola", "is_eos": True, "generation_id": "g2"})
        message = await receive(ws)
        assert message["data"]["generation_id"] == "g2"
        assert len(base64.b64decode(message["data"]["audio"])) == 24000 * 2 * 0.1  # "hola" only


def test_speech_to_text_settings_are_checked():
    assert stream_settings(MultiDict()) == (16000, None)
    assert stream_settings(MultiDict(sample_rate="24000")) == (24000, None)
    assert "format 'mp3' is not supported" in stream_settings(MultiDict(format="mp3"))[1]
    assert "sample_rate must be" in stream_settings(MultiDict(sample_rate="fast"))[1]


def test_speech_to_text_transcripts_carry_the_segment_and_what_was_added():
    peer = SpeechToTextPeer(Grant(), None, 16000)

    def transcript(kind: str, text: str) -> dict:
        return peer.transcript(kind, {"transcription": {
            "transcription_id": "t1", "language": "en", "text": text,
            "segments": [{"text": text, "start": 0.5, "end": 1.5}]}})

    first = transcript("partial_transcription", "Hello my")
    assert first == {"message_type": "transcription", "transcription_id": "t1", "language": "en",
                     "is_eos": False, "segment": {"text": "Hello my", "start_time": 0.5, "end_time": 1.5},
                     "delta": {"text": "Hello my"}}
    assert transcript("partial_transcription", "Hello my friend")["delta"] == {"text": "friend"}
    final = transcript("validated_transcription", "Hello my friend.")
    assert final["is_eos"] and final["delta"] == {"text": "."}
    # The recognizer rewrote its tail: the segment is the truth, the delta the whole text.
    assert transcript("partial_transcription", "Hi there")["delta"] == {"text": "Hi there"}
