"""Speech in, translated speech out: VAD segments -> recognition -> translation -> synthesis.

Each publisher's audio gets its own segmenter and its own ordered processing queue; the
engines run in threads so the event loop keeps serving audio and the control API.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

import numpy as np

from . import metrics, protocol
from .audio_output import TranslatedTrack
from .engines.registry import Engines
from .segmenter import Segment, SpeechSegmenter
from .task import TaskState, TranslationTask

log = logging.getLogger("lingo.worker")

Emit = Callable[[str, dict], Awaitable[None]]
# (language, transcription_id, int16 samples, sample rate): speech for clients that take audio
# over the control WebSocket.
SpeechSink = Callable[[str, str, np.ndarray, int], Awaitable[None]]
# Queue level reported in tts_buffer_stats.
MAX_QUEUE_MS = 20_000


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


class TranslationPipeline:
    def __init__(self, engines: Engines, task: TranslationTask, emit: Emit,
                 tracks_changed: Callable[[list[str]], Awaitable[None]] | None = None,
                 on_speech: SpeechSink | None = None):
        self.engines = engines
        self._on_speech = on_speech
        self.task = task
        self._emit = emit
        self._tracks_changed = tracks_changed
        self.tracks: dict[str, TranslatedTrack] = {}
        # Serialises recognizers that are not thread-safe. A final result never waits for a
        # partial on a thread-safe recognizer, and partials are skipped while finals run.
        self._recognizer_lock = asyncio.Lock()
        self.finals_running = 0

    async def ensure_tracks(self) -> None:
        wanted = set(self.task.target_languages)
        for language in wanted - self.tracks.keys():
            self.tracks[language] = TranslatedTrack(language)
        for language in set(self.tracks) - wanted:
            await self.tracks.pop(language).close()
        if self._tracks_changed:
            await self._tracks_changed(sorted(self.tracks))

    def speaker(self, identity: str) -> "SpeakerStream":
        return SpeakerStream(self, identity)

    async def transcribe(self, audio: np.ndarray, final: bool) -> str:
        task = self.task
        recognizer = self.engines.recognizer_for(task.source_language, task.options.asr_engine)
        self.finals_running += final
        try:
            if recognizer.thread_safe:
                return await asyncio.to_thread(recognizer.transcribe, audio, task.source_language)
            async with self._recognizer_lock:
                return await asyncio.to_thread(recognizer.transcribe, audio, task.source_language)
        finally:
            self.finals_running -= final

    async def process_segment(self, identity: str, segment: Segment, start: float, end: float) -> None:
        """One utterance (`start`/`end`: seconds into the speaker's stream) through every stage."""
        task = self.task
        if task.state != TaskState.RUNNING:
            return
        transcription_id = f"{identity}:{segment.index}"
        audio_seconds = len(segment.audio) / 16000
        timings: dict[str, float] = {"audio_seconds": round(audio_seconds, 2)}
        started = time.monotonic()
        text = await self.transcribe(segment.audio, final=True)
        timings["asr_ms"] = _ms(time.monotonic() - started)
        timings["asr_real_time_factor"] = round((time.monotonic() - started) / max(audio_seconds, 1e-3), 3)
        if not text:
            return
        await self._emit("validated_transcription", protocol.transcription(
            transcription_id, task.source_language, text, start, end, identity))
        first_frames = []
        for language in task.target_languages:
            started = time.monotonic()
            translated = await asyncio.to_thread(self.engines.translator.translate, text, task.source_language, language)
            timings[f"mt_ms.{language}"] = _ms(time.monotonic() - started)
            await self._emit("translated_transcription", protocol.transcription(
                transcription_id, language, translated, start, end, identity))
            if not translated or language not in self.tracks:
                continue
            started = time.monotonic()
            speech = await asyncio.to_thread(
                self.engines.synthesizer.synthesize, translated, language,
                task.options.voices.get(language), task.options.speech_rate,
            )
            timings[f"tts_ms.{language}"] = _ms(time.monotonic() - started)
            timings[f"tts_audio_seconds.{language}"] = round(len(speech.samples) / speech.sample_rate, 2)
            track = self.tracks.get(language)  # the language may have been dropped meanwhile
            if track is not None:
                first_frames.append((language, track.play(speech.samples, speech.sample_rate)))
            if self._on_speech:
                await self._on_speech(language, transcription_id, speech.samples, speech.sample_rate)
        if first_frames:
            await self._emit("tts_buffer_stats", protocol.tts_buffer_stats(
                {language: (track.queued_ms(), MAX_QUEUE_MS) for language, track in self.tracks.items()}))
        for language, first_frame in first_frames:
            went_out = await first_frame
            timings[f"end_of_speech_to_audio_ms.{language}"] = _ms(went_out - segment.speech_ended_at)
            metrics.END_TO_AUDIO.labels(language).observe(went_out - segment.speech_ended_at)
        metrics.SEGMENTS.inc()
        metrics.STAGE_SECONDS.labels("asr").observe(timings["asr_ms"] / 1000)
        for key, milliseconds in timings.items():
            stage = key.split("_ms.", 1)[0]
            if stage in ("mt", "tts"):
                metrics.STAGE_SECONDS.labels(stage).observe(milliseconds / 1000)
        await self._emit("pipeline_timings", protocol.pipeline_timings(transcription_id, timings))

    async def close(self) -> None:
        for track in self.tracks.values():
            await track.close()
        self.tracks.clear()


class SpeakerStream:
    """Audio of one publisher: segmentation on arrival, recognition in arrival order."""

    def __init__(self, pipeline: TranslationPipeline, identity: str):
        self.pipeline, self.identity = pipeline, identity
        self.segmenter = SpeechSegmenter(pipeline.engines.new_vad())
        self._segments: asyncio.Queue[Segment | None] = asyncio.Queue()
        self._worker = asyncio.create_task(self._consume(), name=f"segments-{identity}")
        self._partial_task: asyncio.Task | None = None
        self._last_partial = 0.0
        # Segment times are reported in seconds of this speaker's audio, as Palabra does.
        self._samples_seen = 0
        self._segment_times: dict[int, tuple[float, float]] = {}

    async def feed(self, samples: np.ndarray) -> None:
        task = self.pipeline.task
        if task.state != TaskState.RUNNING:
            return
        now = time.monotonic()
        self._samples_seen += len(samples)
        for segment in self.segmenter.push(samples, now, task.options):
            self._queue(segment)
        self._maybe_partial(now)

    def _queue(self, segment: Segment) -> None:
        end = self._samples_seen / 16000
        self._segment_times[segment.index] = (max(0.0, end - len(segment.audio) / 16000), end)
        self._segments.put_nowait(segment)

    def _maybe_partial(self, now: float) -> None:
        interval = self.pipeline.task.options.partial_interval_ms / 1000
        busy = self._partial_task is not None and not self._partial_task.done()
        if interval <= 0 or busy or not self.segmenter.in_speech or now - self._last_partial < interval:
            return
        if self.pipeline.finals_running or self._segments.qsize():
            return  # final results first: two cores are better spent on them
        self._last_partial = now
        audio, index = self.segmenter.current_audio(), self.segmenter.next_index
        self._partial_task = asyncio.create_task(self._partial(audio, index))

    async def _partial(self, audio: np.ndarray, index: int) -> None:
        task = self.pipeline.task
        try:
            text = await self.pipeline.transcribe(audio, final=False)
        except Exception:
            log.exception("partial transcription failed")
            return
        if text:
            end = self._samples_seen / 16000
            await self.pipeline._emit("partial_transcription", protocol.transcription(
                f"{self.identity}:{index}", task.source_language, text, max(0.0, end - len(audio) / 16000), end,
                self.identity))

    async def _consume(self) -> None:
        while (segment := await self._segments.get()) is not None:
            start, end = self._segment_times.pop(segment.index, (0.0, 0.0))
            try:
                await self.pipeline.process_segment(self.identity, segment, start, end)
            except Exception as exc:
                log.exception("segment %s of %s failed", segment.index, self.identity)
                await self.pipeline._emit("error", protocol.error("PIPELINE_ERROR", str(exc)[:300]))

    async def close(self) -> None:
        last = self.segmenter.flush()
        if last is not None:
            self._queue(last)
        self._segments.put_nowait(None)
        await asyncio.wait_for(self._worker, timeout=60)
