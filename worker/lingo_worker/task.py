"""The translation task a session runs, and who may change which part of it."""

from __future__ import annotations

import re
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lingo_api.session_spec import LANGUAGE_PATTERN, MAX_TARGET_LANGUAGES, check_target_languages
from lingo_api.session_tokens import Permission


VOICE_PATTERN = re.compile(r"^[A-Za-z0-9_+.-]{1,64}$")


class TaskState(str, Enum):
    RUNNING = "running"
    PAUSED = "paused"
    ENDED = "ended"


class TaskOptions(BaseModel):
    """Engine options; editable by anyone with the `edit` permission (subscribers included)."""

    model_config = ConfigDict(extra="forbid")

    vad_threshold: float = Field(0.5, ge=0.05, le=0.95, description="speech probability that opens a segment")
    min_silence_ms: int = Field(400, ge=100, le=3000,
                                description="silence that closes a short segment; after longer speech it shrinks, "
                                            "50 ms per second of speech, down to half (worker/lingo_worker/segmenter.py)")
    max_segment_seconds: float = Field(15.0, ge=1.0, le=30.0)
    partial_interval_ms: int = Field(1000, ge=0, le=10_000, description="0 disables partial transcriptions")
    speech_rate: int = Field(160, ge=80, le=400, description="synthesis words per minute")
    voices: dict[str, str] = Field(default_factory=dict, max_length=MAX_TARGET_LANGUAGES,
                                   description="target language -> TTS voice name")
    asr_engine: str | None = Field(None, pattern="^(whisper|whisper-tiny-en|pocketsphinx)$")

    @field_validator("voices")
    @classmethod
    def _voices(cls, value: dict[str, str]) -> dict[str, str]:
        # Broadcast to every client of the session: each entry is bounded, not just the frame.
        for language, voice in value.items():
            if not re.fullmatch(LANGUAGE_PATTERN, language) or not VOICE_PATTERN.fullmatch(voice):
                raise ValueError("voices maps a language code to a voice name (letters, digits, _+.-, "
                                 "at most 64 characters)")
        return value


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
        if self.source_language is not None or self.target_languages is not None:
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
