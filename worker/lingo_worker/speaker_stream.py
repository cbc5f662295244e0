"""One speaker's audio, turned into translation units while they talk.

Audio arrives in real time (`feed`); the speech detector passes on only speech, and a recognition
loop decodes the utterance in progress whenever STEP_SECONDS more of it has arrived:
- simultaneous interpretation commits the words two decodes in a row agree on
  (worker/lingo_worker/streaming_transcriber.py) and closes units at clause boundaries
  (worker/lingo_worker/translation_units.py), so a talk without pauses is translated as it goes;
- consecutive interpretation decodes only for partial transcriptions and commits at the end of
  each utterance (or at the unit cap, between words).
Either way the end of an utterance (or `flush`) commits every word heard and closes the unit.
Units go to the pipeline in order, one at a time, while recognition goes on.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import metrics
from .engines.base import ASR_SAMPLE_RATE
from .speech_detector import SpeechDetector, SpeechPiece
from .streaming_transcriber import StreamingTranscriber, Word
from .task import TaskState
from .translation_units import PUNCTUATION, SENTENCE_REASONS, Unit, UnitBuilder

if TYPE_CHECKING:
    from .pipeline import TranslationPipeline

log = logging.getLogger("lingo.worker")

STEP_SECONDS = 0.35  # of new speech between two decodes
# Audio after a word before it is committed. Whisper hears a word better with some of what follows:
# 0.7 s against 0.5 cost 0.1 s of lag and saved about 2 points of WER on the Italian talk.
RIGHT_CONTEXT_SECONDS = 0.7
# ... and after a word both decodes were sure of (streaming_transcriber.SURE_PROBABILITY): one step
# less. Replayed (bench/recognition_replay.py), words were committed about 0.2 s of audio sooner in
# all three talks, with no rise in WER.
SURE_RIGHT_CONTEXT_SECONDS = 0.35
# Words that end this close to the end of a unit cap's decode may be cut off: they stay for later.
CAP_MARGIN_SECONDS = 0.5
MAX_BUFFER_SECONDS = 8.0  # audio kept for context; beyond it the buffer is trimmed at a unit's end
# A buffer this much longer than that means nothing was agreed on for a long time: what was heard
# is committed (up to the margin) rather than decoded ever longer.
STALL_FACTOR = 1.5
MIN_VOICED_SECONDS = 0.15  # of speech in the buffer before it is worth a decode
ARRIVALS_KEPT = 12_000  # (stream time, arrival) pairs: two minutes of 10 ms frames


@dataclass
class RecognizedUnit:
    unit: Unit
    first_word_at: float  # monotonic time the unit's first word had arrived
    last_word_at: float  # ... its last word
    closed_at: float  # when it was committed
    decode_seconds: float  # the decode that closed it
    decoded_audio_seconds: float


class SpeakerStream:
    def __init__(self, pipeline: "TranslationPipeline", identity: str):
        self.pipeline, self.identity = pipeline, identity
        self.detector = SpeechDetector(pipeline.engines.new_vad())
        self.transcriber = StreamingTranscriber()
        task = pipeline.task  # its mode and unit cap are set again at each decode
        self.units = UnitBuilder(task.options.simultaneous, task.options.unit_seconds(task.source_language))
        self._pieces: list[SpeechPiece] = []  # detected speech not yet in the transcriber
        self._decoded_seconds = 0.0  # buffer length at the last decode
        self._last_sentence_end: float | None = None  # where the buffer is trimmed at the next sentence end
        self._voiced = 0.0  # seconds of speech absorbed since everything was last committed
        self._loops_counted = 0
        self._last_partial = 0.0
        self._flush = asyncio.Event()
        self._drop = asyncio.Event()
        self._wake = asyncio.Event()
        self._closing = False
        # Stream time (seconds of this speaker's audio) -> the monotonic time it arrived.
        self._stream_times: list[float] = []
        self._arrivals: list[float] = []
        self._samples_seen = 0
        self._recognized: asyncio.Queue[RecognizedUnit | None] = asyncio.Queue()
        self._recognizer = asyncio.create_task(self._recognize(), name=f"recognize-{identity}")
        self._translator = asyncio.create_task(self._translate(), name=f"units-{identity}")

    # -- audio in -----------------------------------------------------------------------------

    async def feed(self, samples: np.ndarray) -> None:
        task = self.pipeline.task
        if task.state != TaskState.RUNNING or self._closing:
            return
        self._samples_seen += len(samples)
        self._note_arrival(self._samples_seen / ASR_SAMPLE_RATE, time.monotonic())
        options = task.options
        self._pieces.extend(self.detector.push(samples, options.vad_threshold, options.min_silence_ms))
        self._wake.set()

    @property
    def caught_up(self) -> bool:
        """Everything fed so far has gone through recognition (bench/recognition_replay.py waits for it)."""
        return not self._wake.is_set() and not self._pieces

    def flush(self) -> None:
        """Commit what was heard and close the unit in progress now (Palabra's flush_task)."""
        self._flush.set()
        self._wake.set()

    def drop_phrase(self) -> None:
        """Forget what was heard and not yet handed to translation (Palabra's interrupt_task):
        the phrase in progress is never translated; what the speaker says next starts afresh."""
        self._drop.set()
        self._wake.set()

    def _dropped(self) -> None:
        # In the recognizer's own task, between decodes, so no decode commits the dropped words.
        self._drop.clear()
        self._pieces.clear()
        self.transcriber.clear()
        self.units.words.clear()
        self._decoded_seconds, self._voiced = 0.0, 0.0
        self._last_sentence_end = None

    async def close(self) -> None:
        """The speaker is gone: translate what they said, then stop (at once if the task ended)."""
        self._closing = True
        if self.pipeline.task.state == TaskState.ENDED:
            self._recognizer.cancel()
            self._translator.cancel()
            await asyncio.gather(self._recognizer, self._translator, return_exceptions=True)
            return
        if (last := self.detector.end()) is not None:
            self._pieces.append(last)
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.gather(self._recognizer, self._translator), timeout=60)
        except TimeoutError:
            log.warning("speaker %s: translating the rest took over 60 s; dropped", self.identity)
            self._recognizer.cancel()
            self._translator.cancel()

    def _note_arrival(self, stream_time: float, now: float) -> None:
        self._stream_times.append(stream_time)
        self._arrivals.append(now)
        if len(self._arrivals) > ARRIVALS_KEPT:
            del self._stream_times[: ARRIVALS_KEPT // 2], self._arrivals[: ARRIVALS_KEPT // 2]

    def arrival(self, stream_time: float) -> float:
        """The monotonic time the audio at `stream_time` had arrived."""
        index = bisect.bisect_left(self._stream_times, stream_time)
        return self._arrivals[min(index, len(self._arrivals) - 1)] if self._arrivals else time.monotonic()

    # -- recognition --------------------------------------------------------------------------

    async def _follow_task(self) -> None:
        """Simultaneous or consecutive and the unit cap as the task says now (set_task may change
        them mid-talk; a recognizer without word times can only be consecutive)."""
        options = self.pipeline.task.options
        recognizer = await self.pipeline.loaded_recognizer()
        self.units.simultaneous = options.simultaneous and recognizer.word_timestamps
        self.units.max_seconds = options.unit_seconds(self.pipeline.task.source_language)

    async def _recognize(self) -> None:
        try:
            while True:
                if self._drop.is_set():
                    self._dropped()
                mark = self._absorb()
                if mark == "end_of_speech" or self._flush.is_set():
                    self._flush.clear()
                    await self._finish(mark or "flush", ended=mark == "end_of_speech")
                    continue
                if mark == "pause" and self.units.simultaneous:
                    await self._step(pause=True)  # a breath: decode now rather than at the next step
                    continue
                if self._closing and not self._pieces:
                    return
                if self.transcriber.seconds - self._decoded_seconds >= STEP_SECONDS:
                    await self._step()
                    continue
                self._wake.clear()
                await self._wake.wait()
        finally:
            self._recognized.put_nowait(None)

    def _absorb(self) -> str | None:
        """Move detected speech into the transcriber, up to the next breath or end of the utterance
        (what follows waits for the next round): "pause", "end_of_speech" or None."""
        while self._pieces:
            piece = self._pieces.pop(0)
            if len(piece.audio):
                self.transcriber.append(piece.audio, piece.start)
                self._voiced += piece.voiced
            if piece.ended:
                return "end_of_speech"
            if piece.paused:
                return "pause"
        return None

    async def _step(self, pause: bool = False) -> None:
        await self._follow_task()
        simultaneous, cap = self.units.simultaneous, self.units.max_seconds
        transcriber = self.transcriber
        snapshot = transcriber.snapshot()
        self._decoded_seconds = transcriber.seconds
        now = time.monotonic()
        partial_due = self._partial_due(now)
        unit_start = max(self.units.words[0].start if self.units.words else 0.0, transcriber.start)
        # Simultaneous: a buffer that grew this long was never agreed on. Consecutive: the
        # utterance reached the unit cap. Either way what was heard is committed, between words.
        forced = transcriber.seconds >= STALL_FACTOR * MAX_BUFFER_SECONDS if simultaneous \
            else transcriber.end - unit_start >= cap
        if not (simultaneous or forced or partial_due) or self._voiced < MIN_VOICED_SECONDS:
            return  # consecutive: nothing to decode for until the utterance ends; or only silence
        words, decode_seconds = await self._decode(snapshot, final=simultaneous or forced)
        if forced:
            committed = transcriber.commit_all(words, snapshot, before=snapshot.end - CAP_MARGIN_SECONDS)
        elif simultaneous:
            # Two decodes agreeing on a word heard with almost no audio after it can both be wrong
            # (a word cut short, one that goes on); after a breath the silence is that audio.
            committed = transcriber.agree(words, snapshot, 0.0 if pause else RIGHT_CONTEXT_SECONDS,
                                          0.0 if pause else SURE_RIGHT_CONTEXT_SECONDS)
            if pause and transcriber.tentative and transcriber.tentative[-1].text.endswith(PUNCTUATION):
                # Whisper ended what it heard before the breath with punctuation: a whole phrase,
                # not a word cut short (those it leaves bare), so it need not wait for agreement.
                committed += transcriber.commit_tentative()
        else:
            committed = transcriber.hear(words, snapshot)
        closed = self.units.add(committed, transcriber.tentative, paused=pause and not transcriber.tentative)
        if forced and not closed and self.units.words:
            closed.append(self.units.close("length"))
        self._hand_over(closed, decode_seconds, snapshot.seconds)
        if partial_due:
            await self._partial(now)

    async def _finish(self, reason: str, ended: bool) -> None:
        """Commit everything heard so far and close the unit in progress: at the end of an
        utterance, at a breath in simultaneous interpretation, or on flush."""
        transcriber = self.transcriber
        await self._follow_task()
        decode_seconds, decoded = 0.0, 0.0
        if self._voiced >= MIN_VOICED_SECONDS:  # a decode of silence is where Whisper invents words
            snapshot = transcriber.snapshot()
            words, decode_seconds = await self._decode(snapshot, final=True)
            decoded = snapshot.seconds
            committed = transcriber.commit_all(words, snapshot)
            closed = self.units.add(committed, [])
        else:
            closed = []
        if (last := self.units.close(reason)) is not None:
            closed.append(last)
        if ended:
            transcriber.clear()
        else:
            transcriber.trim(transcriber.end)
        self._last_sentence_end = None
        self._decoded_seconds = transcriber.seconds
        self._voiced = 0.0
        self._hand_over(closed, decode_seconds, decoded)

    async def _decode(self, snapshot, final: bool) -> tuple[list, float]:
        started = time.monotonic()
        words = await self.pipeline.recognize(snapshot, final)
        return words, time.monotonic() - started

    def _hand_over(self, closed: list[Unit], decode_seconds: float, decoded: float) -> None:
        if self.transcriber.loops > self._loops_counted:
            metrics.RECOGNITION_LOOPS.inc(self.transcriber.loops - self._loops_counted)
            self._loops_counted = self.transcriber.loops
        if not closed:
            return
        # The buffer is trimmed at sentence ends, one sentence behind: Whisper hears a sentence's
        # words better with the sentence's start in its audio than with the start only in its
        # text, and better still with the sentence before it. Trimmed right at a sentence end, a
        # period Whisper put at a comma's pause cost the next clause its context ("les parades." |
        # "Per què un bon autobús es mereix un bon lloc per esperar?" for "..., perquè ... esperar.").
        # A buffer grown past MAX_BUFFER_SECONDS is trimmed at the last unit closed, to bound the
        # cost of each decode.
        ends = [unit.end for unit in closed if unit.reason in SENTENCE_REASONS]
        trim_at = None
        if ends:
            trim_at, self._last_sentence_end = self._last_sentence_end, ends[-1]
        if self.transcriber.seconds > MAX_BUFFER_SECONDS:
            trim_at = ends[-1] if ends else closed[-1].end
        if trim_at is not None and trim_at > self.transcriber.start:
            self.transcriber.trim(min(trim_at, self.transcriber.end))
            self._decoded_seconds = self.transcriber.seconds
        now = time.monotonic()
        for unit in closed:
            self._recognized.put_nowait(RecognizedUnit(unit, self.arrival(unit.start), self.arrival(unit.end), now,
                                                       decode_seconds, decoded))

    # -- partial transcriptions ---------------------------------------------------------------

    def _partial_due(self, now: float) -> bool:
        interval = self.pipeline.task.options.partial_interval_ms / 1000
        return interval > 0 and now - self._last_partial >= interval

    async def _partial(self, now: float) -> None:
        if self.pipeline.finals_running and not self.units.simultaneous:
            return  # consecutive: two cores are better spent on final results
        words: list[Word] = [*self.units.words, *self.transcriber.tentative]
        if not words:
            return
        self._last_partial = now
        await self.pipeline.partial(self.identity, self.transcription_id(self.units.count), words)

    def transcription_id(self, unit_index: int) -> str:
        return f"{self.identity}:{unit_index}"

    # -- units out ----------------------------------------------------------------------------

    async def _translate(self) -> None:
        while (recognized := await self._recognized.get()) is not None:
            try:
                await self.pipeline.process_unit(self, recognized)
            except Exception as exc:
                log.exception("unit %s of %s failed", recognized.unit.index, self.identity)
                await self.pipeline.report_error(exc)
