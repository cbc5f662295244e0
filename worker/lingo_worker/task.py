"""The translation task a session runs, and who may change which part of it."""

from __future__ import annotations

import re
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lingo_api.session_spec import LANGUAGE_PATTERN, MAX_TARGET_LANGUAGES, check_target_languages
from lingo_api.session_tokens import Permission

from .engines.languages import base_language
from .speech_backlog import BacklogSettings

VOICE_PATTERN = re.compile(r"^[A-Za-z0-9_+.-]{1,64}$")
# The longest translation unit when the task does not set max_segment_seconds: short in
# simultaneous interpretation, where a unit's length is most of the listener's lag. 1.3 against
# 1.6 s: Catalan and Italian EVS p50 0.13 and 0.25 s lower, chrF unchanged
# (bench/results/simultaneous-units-1300ms against simultaneous-trimmed-speech). English keeps
# 1.6 s: its recognizer commits words 0.4 s sooner, so it is within the goal either way, and its
# translation into Spanish lost 3 points of chrF at 1.3 s (simultaneous-units-1300ms-en).
SIMULTANEOUS_UNIT_SECONDS = 1.3
ENGLISH_UNIT_SECONDS = 1.6
CONSECUTIVE_UNIT_SECONDS = 15.0


class TaskState(str, Enum):
    RUNNING = "running"
    PAUSED = "paused"
    ENDED = "ended"


class TaskOptions(BaseModel):
    """Engine options; editable by anyone with the `edit` permission (subscribers included)."""

    model_config = ConfigDict(extra="forbid")

    interpretation: Literal["simultaneous", "consecutive"] = Field(
        "simultaneous", description="simultaneous: words are committed and translated while the speaker talks; "
                                    "consecutive: each utterance is translated after the speaker pauses")
    vad_threshold: float = Field(0.5, ge=0.05, le=0.95, description="speech probability that opens an utterance")
    min_silence_ms: int = Field(400, ge=100, le=3000,
                                description="silence that ends a short utterance; after longer speech it shrinks, "
                                            "50 ms per second of speech, down to half "
                                            "(worker/lingo_worker/speech_detector.py)")
    max_segment_seconds: float | None = Field(
        None, ge=1.0, le=30.0, description="longest translation unit, closed at the last word boundary; "
                                           f"unset: {SIMULTANEOUS_UNIT_SECONDS:g} s simultaneous "
                                           f"({ENGLISH_UNIT_SECONDS:g} s from English), "
                                           f"{CONSECUTIVE_UNIT_SECONDS:g} s consecutive")
    partial_interval_ms: int = Field(500, ge=0, le=10_000,
                                     description="least time between partial transcriptions; 0 disables them")
    translate_partials: bool = Field(False, description="send partial_translated_transcription too")
    speech: bool = Field(True, description="synthesize the translations; false: transcripts and translations as "
                                           "text only (Palabra's speech-to-text stream runs so)")
    speech_rate: int = Field(190, ge=80, le=400, description="synthesis words per minute")
    voices: dict[str, str] = Field(default_factory=dict, max_length=MAX_TARGET_LANGUAGES,
                                   description="target language -> TTS voice name")
    asr_engine: str | None = Field(None, pattern="^(whisper|whisper-tiny-en|pocketsphinx)$")
    # The speech backlog per target track (worker/lingo_worker/speech_backlog.py).
    desired_queue_ms: int = Field(500, ge=0, le=60_000, description="queued speech above which it speeds up")
    max_queue_ms: int = Field(6000, ge=1000, le=120_000, description="queued speech beyond which old units are dropped")
    auto_tempo: bool = True
    min_tempo: float = Field(1.15, ge=1.0, le=2.0)
    max_tempo: float = Field(1.45, ge=1.0, le=2.0)

    @field_validator("voices")
    @classmethod
    def _voices(cls, value: dict[str, str]) -> dict[str, str]:
        # Broadcast to every client of the session: each entry is bounded, not just the frame.
        for language, voice in value.items():
            if not re.fullmatch(LANGUAGE_PATTERN, language) or not VOICE_PATTERN.fullmatch(voice):
                raise ValueError("voices maps a language code to a voice name (letters, digits, _+.-, "
                                 "at most 64 characters)")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> "TaskOptions":
        if self.desired_queue_ms > self.max_queue_ms:
            raise ValueError("desired_queue_ms must not exceed max_queue_ms")
        if self.min_tempo > self.max_tempo:
            raise ValueError("min_tempo must not exceed max_tempo")
        return self

    @property
    def simultaneous(self) -> bool:
        return self.interpretation == "simultaneous"

    def unit_seconds(self, source_language: str) -> float:
        """The longest translation unit in the task's mode, for speech in `source_language`."""
        if self.max_segment_seconds is not None:
            return self.max_segment_seconds
        if not self.simultaneous:
            return CONSECUTIVE_UNIT_SECONDS
        return ENGLISH_UNIT_SECONDS if base_language(source_language) == "en" else SIMULTANEOUS_UNIT_SECONDS

    @property
    def backlog(self) -> BacklogSettings:
        return BacklogSettings(self.desired_queue_ms, self.max_queue_ms, self.auto_tempo, self.min_tempo,
                               self.max_tempo)


# The options a listener's `edit` may change: how often partial transcripts come and whether
# they are translated. Recognition, segmentation, voices, rate and the backlog are one per session
# (one recognizer, one track per language): a listener who changed them would change them for
# everyone, down to switching the translation off (issue 24), so they need `write`.
EDIT_OPTIONS = frozenset({"partial_interval_ms", "translate_partials"})


class TaskUpdate(BaseModel):
    """Body of `set_task`. Languages need `write`; options alone need only `edit`."""

    model_config = ConfigDict(extra="forbid")

    source_language: str | None = Field(None, pattern=LANGUAGE_PATTERN)
    target_languages: list[str] | None = Field(None, min_length=1, max_length=MAX_TARGET_LANGUAGES)
    options: dict | None = None

    @field_validator("target_languages")
    @classmethod
    def _targets(cls, value: list[str] | None) -> list[str] | None:
        return value if value is None else check_target_languages(value)

    def required_permission(self) -> Permission:
        """Languages and every option that changes what everyone hears need `write`; `edit`
        (a listener's token) changes only how transcripts reach the clients (EDIT_OPTIONS)."""
        if self.source_language is not None or self.target_languages is not None:
            return Permission.WRITE
        if set(self.options or {}) - EDIT_OPTIONS:
            return Permission.WRITE
        return Permission.EDIT


class TranslationTask(BaseModel):
    source_language: str
    target_languages: list[str]
    options: TaskOptions = Field(default_factory=TaskOptions)
    state: TaskState = TaskState.RUNNING
    revision: int = 0
    # Fields of the last Palabra-shaped set_task that were accepted but are not implemented.
    ignored_fields: list[str] = Field(default_factory=list)

    def updated(self, update: TaskUpdate) -> "TranslationTask":
        """A new task with the update applied; options are merged field by field and re-validated."""
        options = self.options
        if update.options is not None:
            options = TaskOptions.model_validate({**self.options.model_dump(), **update.options})
        return TranslationTask(
            source_language=update.source_language or self.source_language,
            target_languages=update.target_languages or self.target_languages,
            options=options,
            state=self.state,
            revision=self.revision + 1,
            ignored_fields=self.ignored_fields,
        )
