"""One published LiveKit audio track per target language, fed with synthesized speech."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
from livekit import rtc

log = logging.getLogger("lingo.worker")

OUTPUT_SAMPLE_RATE = 48_000
FRAME_SAMPLES = OUTPUT_SAMPLE_RATE // 100  # 10 ms frames


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    if source_rate == target_rate or len(samples) == 0:
        return samples
    duration = len(samples) / source_rate
    target_times = np.arange(int(duration * target_rate)) / target_rate
    return np.interp(target_times, np.arange(len(samples)) / source_rate, samples).astype(samples.dtype)


def track_name(language: str) -> str:
    """Palabra's name for a translated track (its SDK looks for this prefix)."""
    return f"translation_{language}"


class TranslatedTrack:
    """Queues utterances and plays them out in real time on one track."""

    def __init__(self, language: str):
        self.language = language
        self.source = rtc.AudioSource(OUTPUT_SAMPLE_RATE, 1)
        self.track = rtc.LocalAudioTrack.create_audio_track(track_name(language), self.source)
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future]] = asyncio.Queue()
        self._queued_samples = 0
        self._player = asyncio.create_task(self._play(), name=f"playout-{language}")

    def play(self, samples: np.ndarray, sample_rate: int) -> asyncio.Future:
        """Queue int16 audio; the returned future resolves with the time its first frame went out."""
        first_frame = asyncio.get_running_loop().create_future()
        resampled = resample(samples.astype(np.float32), sample_rate, OUTPUT_SAMPLE_RATE)
        self._queued_samples += len(resampled)
        self._queue.put_nowait((resampled, first_frame))
        return first_frame

    def queued_ms(self) -> int:
        """Speech waiting to be played out on this track."""
        return round(self._queued_samples * 1000 / OUTPUT_SAMPLE_RATE)

    async def _play(self) -> None:
        while True:
            samples, first_frame = await self._queue.get()
            pcm = np.clip(samples, -32768, 32767).astype(np.int16)
            for start in range(0, len(pcm), FRAME_SAMPLES):
                chunk = pcm[start : start + FRAME_SAMPLES]
                if len(chunk) < FRAME_SAMPLES:
                    chunk = np.pad(chunk, (0, FRAME_SAMPLES - len(chunk)))
                frame = rtc.AudioFrame(chunk.tobytes(), OUTPUT_SAMPLE_RATE, 1, FRAME_SAMPLES)
                await self.source.capture_frame(frame)
                self._queued_samples = max(0, self._queued_samples - FRAME_SAMPLES)
                if not first_frame.done():
                    first_frame.set_result(time.monotonic())

    async def close(self) -> None:
        self._player.cancel()
        await self.source.aclose()
