"""Speech in and out for the tests: synthesized English, a publisher, a listener, a control client."""

from __future__ import annotations

import asyncio
import json
import subprocess
import wave
from pathlib import Path

import aiohttp
import numpy as np
from livekit import rtc

SENTENCE = "Hello my friend. The weather is very nice today."


def speech_wav(tmp: Path, text: str, voice: str = "en-us") -> tuple[np.ndarray, int]:
    path = tmp / "speech.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(path), text], check=True)
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


async def listen_to_track(url: str, token: str, track_name: str) -> tuple[rtc.Room, list[float]]:
    """Join as a listener; returns the room and a list that fills with each frame's mean level."""
    room = rtc.Room()
    energy: list[float] = []

    async def listen(track: rtc.Track):
        async for event in rtc.AudioStream(track, sample_rate=16000, num_channels=1):
            energy.append(float(np.abs(np.frombuffer(event.frame.data, dtype=np.int16)).mean()))

    @room.on("track_subscribed")
    def _on_track(track, publication, participant):
        if publication.name == track_name:
            asyncio.ensure_future(listen(track))

    await room.connect(url, token)
    return room, energy


def audible_frames(energy: list[float], threshold: float = 200) -> int:
    return sum(level > threshold for level in energy)
