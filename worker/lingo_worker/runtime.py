"""The worker's life: load engines, join the room, route publisher audio through the pipeline."""

from __future__ import annotations

import asyncio
import collections
import logging

import numpy as np
from livekit import rtc

from lingo_api.session_tokens import Role

from .engines.base import ASR_SAMPLE_RATE
from .engines.registry import Engines, build_engines
from . import protocol
from .background import BackgroundTasks
from .captions import publish_caption
from .control_peers import WEBSOCKET_SPEAKER_PREFIX
from .pipeline import TranslationPipeline
from .settings import WorkerSettings
from .speaker_stream import SpeakerStream
from .subscription_watch import watch_subscriptions
from .task import TaskState, TaskUpdate, TranslationTask

log = logging.getLogger("lingo.worker")

# Publisher audio that arrives while a cold worker's engines still load is kept (10 ms frames,
# so about 30 s) and translated once they are ready, not dropped.
EARLY_AUDIO_FRAMES = 3000


class WorkerRuntime:
    """Implements the control API's TaskController over a LiveKit room and a pipeline."""

    def __init__(self, settings: WorkerSettings):
        self.settings = settings
        self.task = TranslationTask(source_language=settings.source_language,
                                    target_languages=settings.target_languages)
        self.engines: Engines | None = None
        self.engines_warm = False  # loaded, and warmed for the initial task
        self.warm = asyncio.Event()  # set with engines_warm
        self._changed = asyncio.Event()  # pulsed whenever ready() may have changed its answer
        self.pipeline: TranslationPipeline | None = None
        self.room = rtc.Room()
        # Set by the control hub wiring (worker/lingo_worker/__main__.py).
        self.broadcast = None
        self.on_speech = None
        self.on_data = None
        self.on_participant = None
        self.background = BackgroundTasks()  # awaited when the worker exits (worker/lingo_worker/__main__.py)
        self._speakers: dict[str, SpeakerStream] = {}
        self._publications: dict[str, str] = {}  # language -> track sid
        self._publishing = asyncio.Lock()  # _publish_tracks runs one at a time
        self._source_tracks: dict[str, str] = {}  # publisher identity -> its audio track's sid
        self._connected = False
        self._closing = False
        self.disconnected = asyncio.Event()
        self.ended = asyncio.Event()  # set when the task ends (end_task): the worker then exits
        self.joined = asyncio.Event()  # set at the first join, and kept
        # Set when LiveKit deleted the room: the session is over, and the worker leaves for good.
        self.room_deleted = False
        self._startup_error = ""
        # set_task messages are applied one at a time: each checks its languages (which may load a
        # recognizer, off the event loop) against the task the one before it left.
        self._updating = asyncio.Lock()

    # -- TaskController -----------------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        if self._startup_error:
            return False, self._startup_error
        if not self.engines_warm:
            return False, "loading speech engines"
        if not self.settings.room:
            return True, f"idle in pool {self.settings.pool}, waiting for a session"
        if self.settings.pool and not self.joined.is_set():
            # Claimed and joining: the claim answers once it is in (or fails and the pod goes),
            # so a probe in between must not flip the session's WorkerReady back and forth.
            return True, "claimed; joining the room"
        if not self.settings.join_room:
            return True, "ready (no room: audio over the control WebSocket)"
        if not self._connected and self.task.state != TaskState.ENDED:
            return False, "not connected to the LiveKit room"
        return True, "ready"

    async def wait_ready(self, timeout: float) -> tuple[bool, str]:
        try:
            async with asyncio.timeout(timeout):
                while not (answer := self.ready())[0]:
                    await self._changed.wait()
                return answer
        except TimeoutError:
            return self.ready()

    def _readiness_changed(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def update_task(self, update: TaskUpdate, ignored_fields: list[str] | None = None) -> list[str]:
        async with self._updating:
            return await self._update_task(update, ignored_fields)

    async def _update_task(self, update: TaskUpdate, ignored_fields: list[str] | None) -> list[str]:
        if not self.engines:
            return ["engines are still loading"]
        checked = self.task.updated(update)
        problems = await asyncio.to_thread(self.engines.check_languages, checked.source_language,
                                           checked.target_languages, checked.options.asr_engine)
        if problems:
            return problems
        candidate = self.task.updated(update)  # on the task as it is now: a pause may have come in
        if ignored_fields is not None:
            candidate.ignored_fields = ignored_fields
        self.task = candidate
        # Warmed in the background: the answer to set_task does not wait for engines to start
        # (a first sentence would wait for them anyway).
        self.background.spawn(self._warm_up(candidate), "warm-up")
        if self.pipeline:
            self.pipeline.task = candidate
            if self.task.state != TaskState.ENDED:
                await self.pipeline.ensure_tracks()
        return []

    async def set_state(self, state: TaskState) -> None:
        self.task = self.task.model_copy(update={"state": state, "revision": self.task.revision + 1})
        if self.pipeline:
            self.pipeline.task = self.task
        if state == TaskState.ENDED:
            try:
                await self.shutdown_media()
            finally:
                self.ended.set()

    def speaker(self, identity: str):
        return self.pipeline.speaker(identity)

    def flush(self) -> None:
        for speaker in self._speakers.values():
            speaker.flush()

    async def drained(self) -> None:
        if self.pipeline:
            await self.pipeline.drained()

    async def speak(self, text: str, language: str, translate: bool, transcription_id: str) -> None:
        if self.pipeline:
            await self.pipeline.speak(text, language, translate, transcription_id)

    def interrupt(self, languages: list[str] | None) -> None:
        """The translation's speech stops on `languages` (every track if None); a global interrupt
        also drops every speaker's phrase in progress."""
        if self.pipeline:
            self.pipeline.interrupt(languages)
        if languages is None:
            for speaker in self._speakers.values():
                speaker.drop_phrase()

    def synthesizes(self, language: str) -> bool:
        return self.engines is not None and self.engines.synthesizer.supports(language)

    async def synthesize(self, text: str, language: str, voice: str | None, tempo: float):
        """Speech for text outside the translation (Palabra's text-to-speech stream): the task's
        speech rate at `tempo`, off the event loop."""
        return await asyncio.to_thread(self.engines.synthesizer.synthesize, text, language, voice,
                                       self.task.options.speech_rate, tempo)

    async def publish_data(self, payload: bytes, identity: str | None = None) -> None:
        """A reliable data packet to one participant, or to the whole room."""
        if not self._connected:
            raise ConnectionError("not in the room")
        await self.room.local_participant.publish_data(
            payload, reliable=True, destination_identities=[identity] if identity else [])

    # -- lifecycle ----------------------------------------------------------------------------

    async def emit(self, message_type: str, data: dict) -> None:
        if self.broadcast:
            await self.broadcast(message_type, data)

    async def _speech(self, language: str, transcription_id: str, samples, sample_rate: int, last: bool) -> None:
        if self.on_speech:
            await self.on_speech(language, transcription_id, samples, sample_rate, last)

    async def _caption(self, speaker: str, segment_id: str, language: str, text: str, final: bool,
                       source: bool) -> None:
        """A caption on lk.transcription (worker/lingo_worker/captions.py): the speaker's own words
        from the speaker, the translation from the translator with its track."""
        if not self._connected:
            return
        local = self.room.local_participant
        identity = speaker.removeprefix(WEBSOCKET_SPEAKER_PREFIX)  # audio over the control WebSocket
        sender, track = (identity, self._source_tracks.get(identity, "")) if source \
            else (local.identity, self._publications.get(language, ""))
        await publish_caption(local, text, sender_identity=sender, track_sid=track, segment_id=segment_id,
                              final=final, language=language)

    async def load_engines(self) -> None:
        try:
            settings = self.settings
            self.engines = await asyncio.to_thread(build_engines, settings.profile, settings.model_dir,
                                                   gpu_device=settings.gpu_device,
                                                   gpu_compute_type=settings.gpu_compute_type)
        except Exception as exc:
            self._startup_error = f"speech engines unavailable: {exc}"
            self._readiness_changed()
            raise
        self.pipeline = TranslationPipeline(self.engines, self.task, self.emit, self._publish_tracks,
                                            on_speech=self._speech, on_caption=self._caption)
        await self._warm_up(self.task)
        # The first WebRTC object starts the LiveKit SDK's media runtime (measured 25-70 ms):
        # made here, that cost stays off the first join, which a pooled worker's claim waits for.
        self._media_runtime = rtc.AudioSource(48000, 1)
        self.engines_warm = True
        self.warm.set()
        self._readiness_changed()

    def assign_session(self, room: str, worker_token: str, source_language: str, target_languages: list[str],
                       join_room: bool = True) -> None:
        """A pooled worker's session, from its claim: the room to join (if it has one) and the task
        to run (engines for languages it did not preload are warmed in the background)."""
        self.settings.room, self.settings.worker_token = room, worker_token
        self.settings.join_room = join_room
        preloaded = (self.task.source_language, self.task.target_languages)
        self.task = TranslationTask(source_language=source_language, target_languages=target_languages)
        if self.pipeline:
            self.pipeline.task = self.task
        if (source_language, target_languages) != preloaded:  # the preloaded ones are warm already
            self.background.spawn(self._warm_up(self.task), "warm-up")

    async def _warm_up(self, task: TranslationTask) -> None:
        """Load the recognizer and start the translation and synthesis processes a task needs
        before its first sentence arrives."""
        engines = self.engines
        await asyncio.to_thread(engines.recognizer_for, task.source_language, task.options.asr_engine)
        if warm_up := getattr(engines.translator, "warm_up", None):
            await asyncio.to_thread(warm_up, task.source_language, task.target_languages)
        if warm_up := getattr(engines.synthesizer, "warm_up", None):
            await asyncio.to_thread(warm_up, task.target_languages)

    async def start_without_room(self) -> None:
        """A session without a room (its audio goes over the control WebSocket): the task's
        tracks play out to WebSocket clients only."""
        self.joined.set()
        self._readiness_changed()
        await self.warm.wait()
        await self._start_task()

    async def _start_task(self) -> None:
        problems = self.engines.check_languages(self.task.source_language, self.task.target_languages)
        if problems:
            log.warning("initial task cannot run as configured: %s", "; ".join(problems))
            await self.emit("error", protocol.error("UNSUPPORTED_TASK", "; ".join(problems)))
        else:
            await self.pipeline.ensure_tracks()

    async def join_room(self) -> None:
        """Connect to the session's room (a fresh Room object per attempt) and publish tracks."""
        self.room = rtc.Room()
        self.disconnected.clear()
        self.room.on("track_subscribed", self._on_track_subscribed)
        self.room.on("participant_disconnected", self._on_participant_left)
        self.room.on("disconnected", self._on_disconnected)
        self.room.on("reconnecting", self._on_reconnecting)
        self.room.on("reconnected", self._on_reconnected)
        self.room.on("data_received", self._on_data)
        self.room.on("participant_connected", self._on_participant_connected)
        self.room.on("track_subscription_failed", self._on_subscription_failed)
        await self.room.connect(self.settings.livekit_url, self.settings.worker_token,
                                rtc.RoomOptions(auto_subscribe=True))
        self._connected = True
        self.background.spawn(watch_subscriptions(
            self.room, lambda identity: identity.startswith(Role.PUBLISHER.value),
            lambda sid: sid in self._source_tracks.values()), "subscription-watch")
        self.joined.set()
        self._readiness_changed()
        log.info("joined room %s as %s", self.settings.room, self.room.local_participant.identity)
        await self.warm.wait()  # a cold worker joins while its engines load
        await self._start_task()

    async def _publish_tracks(self, languages: list[str]) -> None:
        # One at a time: the first task's tracks are published after the join while a client's
        # set_task may already be publishing them (a pool worker gets both at its claim), and a
        # track published twice is a PublishTrackError.
        async with self._publishing:
            if not self._connected:
                return
            for language in set(self._publications) - set(languages):
                await self.room.local_participant.unpublish_track(self._publications.pop(language))
            for language in languages:
                if language not in self._publications and language in self.pipeline.tracks:
                    publication = await self.room.local_participant.publish_track(
                        self.pipeline.tracks[language].track,
                        rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE),
                    )
                    self._publications[language] = publication.sid

    def _on_track_subscribed(self, track: rtc.Track, publication, participant: rtc.RemoteParticipant) -> None:
        if track.kind != rtc.TrackKind.KIND_AUDIO or not participant.identity.startswith(Role.PUBLISHER.value):
            return
        log.info("translating audio of %s", participant.identity)
        self._source_tracks[participant.identity] = publication.sid
        self.background.spawn(self._consume_audio(track, participant.identity), f"audio-{participant.identity}")

    def _on_subscription_failed(self, participant: rtc.RemoteParticipant, track_sid: str, error: str) -> None:
        log.warning("subscribing to track %s of %s failed: %s", track_sid, participant.identity, error)

    async def _consume_audio(self, track: rtc.Track, identity: str) -> None:
        stream = rtc.AudioStream(track, sample_rate=ASR_SAMPLE_RATE, num_channels=1)
        early: collections.deque[np.ndarray] = collections.deque(maxlen=EARLY_AUDIO_FRAMES)
        speaker = None
        try:
            async for event in stream:
                samples = np.frombuffer(event.frame.data, dtype=np.int16).astype(np.float32) / 32768.0
                if speaker is None:
                    if not self.engines_warm:
                        early.append(samples)
                        continue
                    speaker = self._speakers.setdefault(identity, self.pipeline.speaker(identity))
                    while early:
                        await speaker.feed(early.popleft())
                await speaker.feed(samples)
        finally:
            await stream.aclose()

    def _on_participant_left(self, participant: rtc.RemoteParticipant) -> None:
        speaker = self._speakers.pop(participant.identity, None)
        if speaker:
            self.background.spawn(speaker.close(), f"last-words-{participant.identity}")

    def _on_disconnected(self, reason=None, *_args) -> None:
        self._connected = False
        self._readiness_changed()
        if reason == rtc.DisconnectReason.ROOM_DELETED:
            self.room_deleted = True
        if not self._closing:
            log.warning("disconnected from the LiveKit room (%s)", rtc.DisconnectReason.Name(reason) if reason else "?")
        self.disconnected.set()

    def _on_data(self, packet: rtc.DataPacket) -> None:
        if self.on_data:  # "" for a sender the room has not announced yet (worker/lingo_worker/early_data.py)
            self.background.spawn(self.on_data(packet.participant.identity if packet.participant else "", packet.data),
                                  "data-packet")

    def _on_participant_connected(self, participant: rtc.RemoteParticipant) -> None:
        if self.on_participant:
            self.on_participant(participant.identity)

    def _on_reconnecting(self, *_args) -> None:
        # Not ready while the SDK retries: readiness (and so WorkerReady) says so within a probe.
        self._connected = False
        self._readiness_changed()
        log.warning("connection to LiveKit lost; reconnecting")

    def _on_reconnected(self, *_args) -> None:
        self._connected = True
        self._readiness_changed()
        log.info("reconnected to LiveKit")

    async def reset_media(self) -> None:
        """Forget the lost room's speakers and tracks; join_room publishes fresh ones."""
        for speaker in list(self._speakers.values()):
            await speaker.close()
        self._speakers.clear()
        if self.pipeline:
            await self.pipeline.close()
        self._publications.clear()

    async def shutdown_media(self) -> None:
        """Leave the room and stop the engines' processes; once (the task's end and the process's
        exit both ask)."""
        if self._closing:
            return
        self._closing = True
        await self.reset_media()
        for engine in (self.engines.translator, self.engines.synthesizer) if self.engines else ():
            if close := getattr(engine, "close", None):
                await asyncio.to_thread(close)
        if self._connected:
            await self.room.disconnect()
        self._connected = False
