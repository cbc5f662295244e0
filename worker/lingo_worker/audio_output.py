"""One published LiveKit audio track per target language, fed with synthesized speech.

The track is the speech backlog's player: units wait in its queue and play out in real time.
Clients that take the translation over the control WebSocket get each unit's audio in chunks as
the track takes it, paced in real time, so they never get what the backlog dropped; they get it
up to SOURCE_BUFFER_MS before the room hears it (the LiveKit source's own buffer), which is most
of the difference between the two transports in bench/simultaneous.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import numpy as np
from livekit import rtc

from .engines.base import ASR_SAMPLE_RATE

log = logging.getLogger("lingo.worker")

OUTPUT_SAMPLE_RATE = 48_000
FRAME_SAMPLES = OUTPUT_SAMPLE_RATE // 100  # 10 ms frames
CHUNK_FRAMES = 32  # 320 ms of a unit per chunk to WebSocket clients (Palabra's chunk length)
# Audio the LiveKit source buffers ahead of what is on the air: enough to ride out a busy event
# loop, short enough that what is queued here (and can still be dropped) is most of the backlog.
SOURCE_BUFFER_MS = 500

# (language, transcription_id, int16 samples at `rate`, rate, last chunk of the unit)
ChunkSink = Callable[[str, str, np.ndarray, int, bool], Awaitable[None]]


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    if source_rate == target_rate or len(samples) == 0:
        return samples
    duration = len(samples) / source_rate
    target_times = np.arange(int(duration * target_rate)) / target_rate
    return np.interp(target_times, np.arange(len(samples)) / source_rate, samples).astype(samples.dtype)


def to_pcm16(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Int16 speech (as synthesized) at `target_rate`, clipped to int16."""
    return np.clip(resample(samples.astype(np.float32), source_rate, target_rate), -32768, 32767).astype(np.int16)


def to_asr_samples(pcm: np.ndarray, source_rate: int) -> np.ndarray:
    """A client's pcm_s16le samples as the recognizer's input: float32 in [-1, 1] at ASR_SAMPLE_RATE."""
    return resample(pcm.astype(np.float32) / 32768.0, source_rate, ASR_SAMPLE_RATE)


def track_name(language: str) -> str:
    """Palabra's name for a translated track (its SDK looks for this prefix)."""
    return f"translation_{language}"


@dataclass
class QueuedSpeech:
    transcription_id: str
    samples: np.ndarray  # int16 at `rate`, as synthesized
    rate: int
    # Resolves with the monotonic time the first frame goes on the air, or None if it was dropped.
    started: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def milliseconds(self) -> float:
        return len(self.samples) * 1000 / self.rate


class TranslatedTrack:
    """Queues units and plays them out in real time on one track."""

    def __init__(self, language: str, on_chunk: ChunkSink | None = None):
        self.language = language
        self.source = rtc.AudioSource(OUTPUT_SAMPLE_RATE, 1, queue_size_ms=SOURCE_BUFFER_MS)
        self.track = rtc.LocalAudioTrack.create_audio_track(track_name(language), self.source)
        self._on_chunk = on_chunk
        self._queue: deque[QueuedSpeech] = deque()
        self._more = asyncio.Event()
        self._playing_left_ms = 0.0  # of the unit on the air
        self._cut = False  # cut_playing(): stop the unit on the air at its next frame
        self._playing: QueuedSpeech | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._player = asyncio.create_task(self._play(), name=f"playout-{language}")

    def play(self, samples: np.ndarray, sample_rate: int, transcription_id: str = "") -> QueuedSpeech:
        """Queue int16 audio; its `started` future resolves with when its first frame goes on the air."""
        queued = QueuedSpeech(transcription_id, samples, sample_rate)
        self._queue.append(queued)
        self._idle.clear()
        self._more.set()
        return queued

    def queued_ms(self) -> float:
        """Speech waiting to be heard on this track: what the source buffers, the rest of the unit
        being played and the units in the queue."""
        return (self.source.queued_duration * 1000 + self._playing_left_ms
                + sum(queued.milliseconds for queued in self._queue))

    def drop_oldest(self, milliseconds: float) -> list[QueuedSpeech]:
        """Drop waiting units, oldest first, until at least `milliseconds` of speech is gone."""
        dropped: list[QueuedSpeech] = []
        while self._queue and sum(d.milliseconds for d in dropped) < milliseconds:
            queued = self._queue.popleft()
            if not queued.started.done():
                queued.started.set_result(None)
            dropped.append(queued)
        return dropped

    def interrupt(self) -> list[QueuedSpeech]:
        """Palabra's interrupt_task: the unit on the air stops now and the waiting ones are dropped."""
        dropped = self.drop_oldest(float("inf"))
        self.cut_playing()
        return dropped

    def cut_playing(self) -> str | None:
        """Stop the speech on the air: the unit being played (at its next frame) and what the
        source holds (at once). Its transcription_id ("" for only the source's tail of a unit
        already handed over), or None when nothing was on the air."""
        if self._playing is None and self.source.queued_duration <= 0:
            return None
        self._cut = self._playing is not None
        self.source.clear_queue()
        self._playing_left_ms = 0.0
        return self._playing.transcription_id if self._playing is not None else ""

    async def drained(self) -> None:
        """Returns once everything queued has played."""
        await self._idle.wait()
        await self.source.wait_for_playout()

    async def _play(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._more.clear()
                await self._more.wait()
                continue
            queued = self._queue.popleft()
            self._playing_left_ms = queued.milliseconds
            self._cut = False
            self._playing = queued
            await self._play_one(queued)
            self._playing = None
            self._playing_left_ms = 0.0

    async def _play_one(self, queued: QueuedSpeech) -> None:
        pcm = to_pcm16(queued.samples, queued.rate, OUTPUT_SAMPLE_RATE)
        frames = max(1, -(-len(pcm) // FRAME_SAMPLES))
        source_per_frame = queued.rate / 100
        for index in range(frames):
            if self._cut:
                break
            chunk = pcm[index * FRAME_SAMPLES:(index + 1) * FRAME_SAMPLES]
            if len(chunk) < FRAME_SAMPLES:
                chunk = np.pad(chunk, (0, FRAME_SAMPLES - len(chunk)))
            if index % CHUNK_FRAMES == 0 and self._on_chunk is not None:
                first, last = int(index * source_per_frame), int((index + CHUNK_FRAMES) * source_per_frame)
                await self._send_chunk(queued, queued.samples[first:last], index + CHUNK_FRAMES >= frames)
            on_air = time.monotonic() + self.source.queued_duration  # after what the source holds
            await self.source.capture_frame(rtc.AudioFrame(chunk.tobytes(), OUTPUT_SAMPLE_RATE, 1, FRAME_SAMPLES))
            self._playing_left_ms = (frames - index - 1) * 10
            if not queued.started.done():
                queued.started.set_result(on_air)

    async def _send_chunk(self, queued: QueuedSpeech, samples: np.ndarray, last: bool) -> None:
        try:
            await self._on_chunk(self.language, queued.transcription_id, samples, queued.rate, last)
        except Exception:  # a client that went away must not stop the room's audio
            log.exception("sending translated audio to control clients failed")

    async def close(self) -> None:
        self._player.cancel()
        for queued in self._queue:
            if not queued.started.done():
                queued.started.set_result(None)
        self._queue.clear()
        self._idle.set()
        await self.source.aclose()
