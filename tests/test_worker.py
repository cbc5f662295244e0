"""The translation worker for real: operator-made pod run by the loopback kubelet, real
livekit-server, recorded speech in, translated speech and transcripts out, control API."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import wave
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from kubernetes_asyncio.client import CoreV1Api
from livekit import api as livekit_api
from livekit import rtc

from lingo_api import resources as r

from .conftest import WORKER_NAMESPACE_PREFIX
from .helpers import create_session, eventually, get_session, read_tokens, wait_for_phase

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("operator", "kubelet", "facade")]

SENTENCE = "Hello my friend. The weather is very nice today."


def speech_wav(tmp: Path, text: str) -> tuple[np.ndarray, int]:
    path = tmp / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
    with wave.open(str(path)) as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16), wav.getframerate()


async def publish_speech(url: str, token: str, samples: np.ndarray, rate: int) -> rtc.Room:
    room = rtc.Room()
    await room.connect(url, token)
    source = rtc.AudioSource(rate, 1)
    track = rtc.LocalAudioTrack.create_audio_track("microphone", source)
    await room.local_participant.publish_track(track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
    await asyncio.sleep(1.0)  # let the worker subscribe before speech starts
    frame = rate // 100
    padded = np.concatenate([samples, np.zeros(rate * 2, dtype=np.int16)])  # trailing silence closes the segment
    for start in range(0, len(padded) - frame, frame):
        await source.capture_frame(rtc.AudioFrame(padded[start:start + frame].tobytes(), rate, 1, frame))
    return room


class ControlClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws
        self.messages: list[dict] = []

    async def send(self, message_type: str, data: dict | None = None) -> None:
        await self.ws.send_str(json.dumps({"message_type": message_type, "data": data or {}}))

    async def next(self, message_type: str, timeout: float = 10, where=lambda d: True) -> dict:
        async def wait():
            async for message in self.ws:
                parsed = json.loads(message.data)
                self.messages.append(parsed)
                if parsed["message_type"] == message_type and where(parsed["data"]):
                    return parsed["data"]
            raise AssertionError(f"socket closed before {message_type}; got {self.messages[-5:]}")

        return await asyncio.wait_for(wait(), timeout)


@pytest.fixture
async def worker_namespace(kube):
    name = f"{WORKER_NAMESPACE_PREFIX}{secrets.token_hex(3)}"
    await CoreV1Api(kube).create_namespace({"metadata": {"name": name}})
    yield name
    await CoreV1Api(kube).delete_namespace(name)


@pytest.fixture
async def ready_session(kube, worker_namespace):
    await create_session(kube, worker_namespace, "talk", subscriberCount=2, targetLanguages=["es"])
    await wait_for_phase(kube, worker_namespace, "talk", r.Phase.READY)

    async def worker_ready():
        session = await get_session(kube, worker_namespace, "talk")
        conditions = {c["type"]: c for c in session["status"].get("conditions", [])}
        return session if conditions.get(r.Condition.WORKER_READY, {}).get("status") == "True" else None

    session = await eventually(worker_ready, timeout=90, what="WorkerReady")
    tokens = await read_tokens(kube, worker_namespace, "talk")
    return session, tokens


async def test_speech_is_transcribed_translated_and_spoken(ready_session, tmp_path):
    session, tokens = ready_session
    status = session["status"]
    samples, rate = speech_wav(tmp_path, SENTENCE)

    listener = rtc.Room()
    spanish_energy: list[float] = []

    async def listen(track: rtc.Track):
        async for event in rtc.AudioStream(track, sample_rate=16000, num_channels=1):
            spanish_energy.append(float(np.abs(np.frombuffer(event.frame.data, dtype=np.int16)).mean()))

    @listener.on("track_subscribed")
    def _on_track(track, publication, participant):
        if publication.name == "translation-es":
            asyncio.ensure_future(listen(track))

    await listener.connect(status["streamUrl"], tokens["subscriber"][0])
    async with aiohttp.ClientSession() as http, http.ws_connect(
        status["controlUrl"], params={"token": tokens["subscriber"][1]}
    ) as ws:
        control = ControlClient(ws)
        assert (await control.next("authenticated"))["role"] == "subscriber"
        task = await control.next("current_task")
        assert task["target_languages"] == ["es"] and task["state"] == "running"

        speaker = await publish_speech(status["streamUrl"], tokens["publisher"][0], samples, rate)
        try:
            validated = await control.next("validated_transcription", timeout=60)
            words = validated["text"].lower()
            assert "friend" in words and "today" in words, validated
            translated = await control.next("translated_transcription", timeout=30)
            assert translated["language"] == "es"
            assert "amigo" in translated["text"].lower() and "hoy" in translated["text"].lower(), translated
            timings = await control.next("pipeline_timings", timeout=30)
            assert timings["asr_ms"] > 0 and "es" in timings["end_of_speech_to_audio_ms"]
            async def audible():
                return sum(energy > 200 for energy in spanish_energy) > 20

            await eventually(audible, timeout=20, what="audible frames on the translation-es track")
            async with http.get(f"http://{status['workerEndpoint']}/metrics") as response:
                exported = await response.text()
            assert "lingo_worker_segments_total 1.0" in exported
            assert 'lingo_worker_end_of_speech_to_audio_seconds_count{language="es"} 1.0' in exported
        finally:
            await speaker.disconnect()
            await listener.disconnect()


async def test_control_api_enforces_token_permissions(ready_session):
    session, tokens = ready_session
    url = session["status"]["controlUrl"]
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url, params={"token": tokens["subscriber"][0]}) as ws:
            sub = ControlClient(ws)
            await sub.next("current_task")
            await sub.send("set_task", {"target_languages": ["ca"]})
            assert (await sub.next("error"))["code"] == "forbidden"
            for action in ("pause_task", "end_task"):
                await sub.send(action)
                assert (await sub.next("error"))["code"] == "forbidden"
            await sub.send("set_task", {"options": {"vad_threshold": 0.6, "speech_rate": 180}})
            task = await sub.next("current_task", where=lambda d: d["revision"] > 0)
            assert task["options"]["vad_threshold"] == 0.6 and task["target_languages"] == ["es"]
            # Malformed input gets an error and the connection stays usable.
            for raw in ("not json", "[]", '{"message_type": 5}', '{"message_type": "dance"}',
                        '{"message_type": "set_task", "data": {"options": {"vad_threshold": 7}}}',
                        '{"message_type": "set_task", "data": {"bogus": 1}}'):
                await ws.send_str(raw)
                assert (await sub.next("error"))["code"] in (
                    "invalid_message", "unknown_message_type", "invalid_task")
            await sub.send("get_task")
            assert (await sub.next("current_task"))["options"]["speech_rate"] == 180

        async with http.ws_connect(url) as ws:  # token in the first message instead of the URL
            pub = ControlClient(ws)
            await pub.send("authenticate", {"token": tokens["publisher"][0]})
            assert (await pub.next("authenticated"))["permissions"] == ["edit", "read", "write"]
            await pub.send("set_task", {"target_languages": ["de"]})
            assert "de" in (await pub.next("error"))["message"]
            await pub.send("set_task", {"target_languages": ["es", "ca"]})
            assert (await pub.next("current_task", where=lambda d: d["target_languages"] == ["es", "ca"]))
            await pub.send("pause_task")
            assert (await pub.next("current_task", where=lambda d: d["state"] == "paused"))
            await pub.send("resume_task")
            assert (await pub.next("current_task", where=lambda d: d["state"] == "running"))

        forged = tokens["publisher"][0][:-4] + "AAAA"
        async with http.ws_connect(url, params={"token": forged}) as ws:
            denied = ControlClient(ws)
            assert (await denied.next("error"))["code"] == "unauthorized"
            closed = await ws.receive(timeout=5)
            assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) or ws.closed


def test_gpu_profile_without_models_fails_clearly(tmp_path):
    env = {**os.environ, "LINGO_ROOM": "r", "LIVEKIT_URL": "ws://127.0.0.1:9", "LINGO_WORKER_TOKEN": "t",
           "LINGO_WORKER_PROFILE": "gpu", "LINGO_MODEL_DIR": str(tmp_path / "missing"),
           "LINGO_WORKER_HOST": "127.0.0.1", "LINGO_WORKER_PORT": "0"}
    result = subprocess.run([sys.executable, "-m", "lingo_worker"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "model directory" in result.stderr and str(tmp_path / "missing") in result.stderr


async def test_worker_rejoins_after_losing_the_room(ready_session, livekit):
    session, _ = ready_session
    room = session["status"]["roomName"]
    async with livekit_api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as lk:
        async def worker_identities():
            listing = await lk.room.list_participants(livekit_api.ListParticipantsRequest(room=room))
            return [p.identity for p in listing.participants if p.identity.startswith("worker-")]

        identity = (await eventually(worker_identities, what="worker in the room"))[0]
        await lk.room.remove_participant(livekit_api.RoomParticipantIdentity(room=room, identity=identity))
        assert identity not in await worker_identities()

        async def back():
            return identity in await worker_identities()

        await eventually(back, timeout=30, what="worker back in the room")
