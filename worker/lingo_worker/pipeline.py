"""Translation units in, translated speech out: recognition calls, translation, synthesis and the
speech backlog of each target track.

Each speaker's audio is turned into units by its own SpeakerStream
(worker/lingo_worker/speaker_stream.py); this module translates and speaks them. The engines run in
threads so the event loop keeps serving audio and the control API.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Awaitable, Callable


from . import metrics, protocol
from .audio_output import ChunkSink, QueuedSpeech, TranslatedTrack
from .engines.base import RecognizedWord, SpeechRecognizer
from .engines.registry import Engines
from .task import TaskState, TranslationTask

if TYPE_CHECKING:
    from .speaker_stream import RecognizedUnit, SpeakerStream
    from .streaming_transcriber import Snapshot, Word

log = logging.getLogger("lingo.worker")

Emit = Callable[[str, dict], Awaitable[None]]
# (speaker identity, segment id, language, text, final, the speaker's own words or a translation)
CaptionSink = Callable[[str, str, str, str, bool, bool], Awaitable[None]]


PACE_SMOOTHING = 0.2  # weight of the newest unit in the learned pace


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


class TranslationPipeline:
    def __init__(self, engines: Engines, task: TranslationTask, emit: Emit,
                 tracks_changed: Callable[[list[str]], Awaitable[None]] | None = None,
                 on_speech: ChunkSink | None = None, on_caption: CaptionSink | None = None):
        self.engines = engines
        self._on_speech = on_speech
        self._on_caption = on_caption
        self.task = task
        self._emit = emit
        self._tracks_changed = tracks_changed
        self.tracks: dict[str, TranslatedTrack] = {}
        # Serialises recognizers that are not thread-safe. A final result never waits for a
        # partial on a thread-safe recognizer, and partials are skipped while finals run.
        self._recognizer_lock = asyncio.Lock()
        self.finals_running = 0
        self._reports: set[asyncio.Task] = set()  # units waiting to be heard (pipeline_timings)
        # Per target language, the voice's pace in characters per second (at tempo 1), learned from
        # what it synthesized: how long a translation will take, before it is synthesized.
        self._pace: dict[str, float] = {}

    async def ensure_tracks(self) -> None:
        """One track per target language; none while the task's `speech` is off (text only)."""
        wanted = set(self.task.target_languages) if self.task.options.speech else set()
        for language in wanted - self.tracks.keys():
            self.tracks[language] = TranslatedTrack(language, self._on_speech)
        for language in set(self.tracks) - wanted:
            await self.tracks.pop(language).close()
        if self._tracks_changed:
            await self._tracks_changed(sorted(self.tracks))

    def speaker(self, identity: str) -> "SpeakerStream":
        from .speaker_stream import SpeakerStream

        return SpeakerStream(self, identity)

    async def loaded_recognizer(self) -> SpeechRecognizer:
        """The task's recognizer; one that is not loaded yet (the task changed its language) is
        loaded off the event loop: a load takes seconds, and audio and control go on meanwhile."""
        task = self.task
        wanted = (task.source_language, task.options.asr_engine)
        return self.engines.recognizer_for(*wanted, load=False) \
            or await asyncio.to_thread(self.engines.recognizer_for, *wanted)

    async def recognize(self, snapshot: "Snapshot", final: bool) -> list[RecognizedWord]:
        task = self.task
        recognizer = await self.loaded_recognizer()
        call = (recognizer.transcribe_words, snapshot.audio, task.source_language)
        self.finals_running += final
        try:
            if recognizer.thread_safe:
                return await asyncio.to_thread(*call)
            async with self._recognizer_lock:
                return await asyncio.to_thread(*call)
        finally:
            self.finals_running -= final

    async def translate(self, text: str, language: str) -> str:
        return await asyncio.to_thread(self.engines.translator.translate, text, self.task.source_language, language)

    async def partial(self, identity: str, transcription_id: str, words: list["Word"]) -> None:
        """What the speaker is saying now, before it is a unit (and its translation when asked)."""
        task = self.task
        text = " ".join(word.text for word in words)
        start, end = words[0].start, words[-1].end
        await self._emit("partial_transcription", protocol.transcription(
            transcription_id, task.source_language, text, start, end, identity))
        await self._caption(identity, transcription_id, task.source_language, text, False, True)
        if not task.options.translate_partials:
            return
        for language in task.target_languages:
            translated = await self.translate(text, language)
            await self._emit("partial_translated_transcription", protocol.transcription(
                transcription_id, language, translated, start, end, identity))
            await self._caption(identity, transcription_id, language, translated, False, False)

    async def process_unit(self, speaker: "SpeakerStream", recognized: "RecognizedUnit") -> None:
        """One unit through translation and synthesis into each target's backlog."""
        task = self.task
        if task.state != TaskState.RUNNING:
            return
        unit, identity = recognized.unit, speaker.identity
        transcription_id = speaker.transcription_id(unit.index)
        timings: dict[str, float] = {
            "audio_seconds": round(unit.end - unit.start, 2),
            "asr_ms": _ms(recognized.decode_seconds),
            "asr_real_time_factor": round(recognized.decode_seconds / max(recognized.decoded_audio_seconds, 1e-3), 3),
            "commit_lag_ms": _ms(recognized.closed_at - recognized.last_word_at),
        }
        await self._emit("validated_transcription", protocol.transcription(
            transcription_id, task.source_language, unit.text, unit.start, unit.end, identity))
        await self._caption(identity, transcription_id, task.source_language, unit.text, True, True)
        queued: list[tuple[str, str, QueuedSpeech]] = []
        for language in task.target_languages:
            started = time.monotonic()
            translated = await self.translate(unit.text, language)
            timings[f"mt_ms.{language}"] = _ms(time.monotonic() - started)
            await self._emit("translated_transcription", protocol.transcription(
                transcription_id, language, translated, unit.start, unit.end, identity))
            track = self.tracks.get(language)
            if not translated or track is None:
                continue
            backlog = task.options.backlog
            pace = self._pace.get(language)  # characters per second at the voice's own pace
            natural_ms = len(translated) / pace * 1000 if pace else 0.0
            tempo = backlog.tempo(track.queued_ms(), (unit.end - unit.start) * 1000, natural_ms)
            started = time.monotonic()
            speech = (await asyncio.to_thread(
                self.engines.synthesizer.synthesize, translated, language,
                task.options.voices.get(language), task.options.speech_rate, tempo,
            )).trimmed()
            timings[f"tts_ms.{language}"] = _ms(time.monotonic() - started)
            seconds = len(speech.samples) / speech.sample_rate
            if seconds > 0:
                measured = len(translated) / (seconds * tempo)
                self._pace[language] = measured if pace is None else pace + PACE_SMOOTHING * (measured - pace)
            timings[f"tts_audio_seconds.{language}"] = round(seconds, 2)
            timings[f"tempo.{language}"] = tempo
            track = self.tracks.get(language)  # the language may have been dropped meanwhile
            if track is None:
                continue
            await self._make_room(track, backlog.excess_ms(track.queued_ms(), seconds * 1000), seconds * 1000)
            timings[f"queue_ms.{language}"] = round(track.queued_ms())
            queued.append((language, translated, track.play(speech.samples, speech.sample_rate, transcription_id)))
            metrics.TEMPO.labels(language).observe(tempo)
        if queued:
            await self._emit("tts_buffer_stats", self.buffer_stats())
        metrics.SEGMENTS.inc()
        metrics.STAGE_SECONDS.labels("asr").observe(recognized.decode_seconds)
        for key, milliseconds in timings.items():
            stage = key.split("_ms.", 1)[0]
            if stage in ("mt", "tts"):
                metrics.STAGE_SECONDS.labels(stage).observe(milliseconds / 1000)
        # The next unit is translated while this one waits to be heard: the backlog is the
        # tracks' queues, where it is measured and bounded, not a line of units in front of them.
        report = asyncio.create_task(self._when_heard(identity, transcription_id, recognized, queued, timings))
        self._reports.add(report)
        report.add_done_callback(self._reports.discard)

    async def _when_heard(self, identity: str, transcription_id: str, recognized: "RecognizedUnit",
                          queued: list[tuple[str, str, QueuedSpeech]], timings: dict[str, float]) -> None:
        """Once a unit's speech starts on each track: its captions, timings and latency metrics."""
        try:
            for language, translated, speech in queued:
                went_out = await speech.started
                if went_out is None:  # dropped from the backlog before it played
                    continue
                timings[f"end_of_speech_to_audio_ms.{language}"] = _ms(went_out - recognized.last_word_at)
                timings[f"first_word_to_audio_ms.{language}"] = _ms(went_out - recognized.first_word_at)
                metrics.END_TO_AUDIO.labels(language).observe(went_out - recognized.last_word_at)
                metrics.FIRST_WORD_TO_AUDIO.labels(language).observe(went_out - recognized.first_word_at)
                # Captions of the translation go out with its speech, as LiveKit Agents syncs them.
                await self._caption(identity, transcription_id, language, translated, True, False)
            await self._emit("pipeline_timings", protocol.pipeline_timings(transcription_id, timings))
        except Exception:
            log.exception("reporting unit %s failed", transcription_id)

    async def _make_room(self, track: TranslatedTrack, milliseconds: float, new_ms: float) -> None:
        """Past the backlog's maximum the oldest speech goes, and clients are told: the units
        still waiting, then, if `new_ms` more would still not fit, the rest of the unit on the air."""
        if milliseconds <= 0:
            return
        dropped = track.drop_oldest(milliseconds)
        dropped_ms = sum(queued.milliseconds for queued in dropped)
        ids = [queued.transcription_id for queued in dropped]
        still_over = track.queued_ms() + new_ms - self.task.options.max_queue_ms
        if still_over > 0:
            playing_ms = track.queued_ms()
            if (cut := track.cut_playing()) is not None:
                ids += [cut] if cut else []
                dropped_ms += playing_ms
        if not ids:
            return
        metrics.SPEECH_DROPPED.labels(track.language).inc(dropped_ms / 1000)
        await self._emit("warning", protocol.warning(
            "SPEECH_QUEUE_OVERFLOW",
            f"the {track.language} speech backlog passed max_queue_ms; {len(ids)} units dropped or cut",
            language=track.language, transcription_ids=ids, dropped_ms=round(dropped_ms)))

    def buffer_stats(self) -> dict:
        maximum = self.task.options.max_queue_ms
        return protocol.tts_buffer_stats({language: (round(track.queued_ms()), maximum)
                                          for language, track in self.tracks.items()})

    async def speak(self, text: str, language: str, translate: bool, transcription_id: str) -> None:
        """Palabra's tts_task: `text` spoken as a unit of its own on `language`'s track, or, with
        `translate`, translated from `language` into every target and spoken on each."""
        task = self.task
        if translate:
            # `language` is the task's source language (control_api checks it): the units' own translation
            said = {target: text if target == language else await self.translate(text, target)
                    for target in task.target_languages}
        else:
            said = {language: text}
        for target, words in said.items():
            track = self.tracks.get(target)
            if track is None or not words.strip():
                continue
            await self._emit("translated_transcription", protocol.transcription(transcription_id, target, words, 0.0, 0.0))
            speech = await asyncio.to_thread(self.engines.synthesizer.synthesize, words, target,
                                             task.options.voices.get(target), task.options.speech_rate)
            track.play(speech.samples, speech.sample_rate, transcription_id)
        await self._emit("tts_buffer_stats", self.buffer_stats())

    def interrupt(self, languages: list[str] | None) -> None:
        """Palabra's interrupt_task: the speech on the air and waiting is cut (every target if None)."""
        for language, track in self.tracks.items():
            if languages is None or language in languages:
                track.interrupt()

    async def drained(self) -> None:
        """Returns once every track has played what it had queued, and each unit's report is out."""
        await asyncio.gather(*(track.drained() for track in list(self.tracks.values())))
        await asyncio.gather(*list(self._reports), return_exceptions=True)

    async def report_error(self, exc: Exception) -> None:
        await self._emit("error", protocol.error("PIPELINE_ERROR", str(exc)[:300]))

    async def _caption(self, identity: str, segment_id: str, language: str, text: str, final: bool,
                       source: bool) -> None:
        if self._on_caption is None:
            return
        try:
            await self._on_caption(identity, segment_id, language, text, final, source)
        except Exception as exc:  # captions are a courtesy: the translation goes on without them
            log.warning("caption not published: %s", exc)

    async def close(self) -> None:
        for track in self.tracks.values():
            await track.close()
        self.tracks.clear()
        for report in list(self._reports):
            report.cancel()
