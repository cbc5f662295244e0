"""The StreamingSession spec, validated the same way by the facade and the operator.

The CRD schema (crds/streamingsession.yaml) enforces the same bounds on the API server, so a
spec written with kubectl is held to the rules the REST facade applies.
"""

from __future__ import annotations

import re
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .languages import pair_problem, recognition_problem

MAX_PUBLISHERS = 8
MAX_SUBSCRIBERS = 200
MAX_TARGET_LANGUAGES = 8
MIN_TTL_SECONDS = 10
MAX_TTL_SECONDS = 86_400
DEFAULT_TTL_SECONDS = 3_600
LANGUAGE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$"


def check_target_languages(languages: list[str]) -> list[str]:
    """Each a language code, none repeated (shared by the session spec and the worker's set_task)."""
    for language in languages:
        if not re.fullmatch(LANGUAGE_PATTERN, language):
            raise ValueError(f"'{language}' is not a language code such as 'es' or 'pt-BR'")
    if len(set(languages)) != len(languages):
        raise ValueError("target languages must not repeat")
    return languages


class WorkerProfile(str, Enum):
    CPU = "cpu"
    GPU = "gpu"


class SessionSpec(BaseModel):
    """Field names are the CRD's (camelCase); `populate_by_name` also accepts snake_case."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_enum_values=True)

    publisher_count: int = Field(1, alias="publisherCount", ge=1, le=MAX_PUBLISHERS)
    subscriber_count: int = Field(0, alias="subscriberCount", ge=0, le=MAX_SUBSCRIBERS)
    source_language: str = Field("en", alias="sourceLanguage", pattern=LANGUAGE_PATTERN)
    target_languages: list[str] = Field(
        default_factory=lambda: ["es"], alias="targetLanguages", min_length=0, max_length=MAX_TARGET_LANGUAGES,
        description="none: a transcription-only session (Palabra's speech-to-text and text-to-speech streams)",
    )
    ttl_seconds: int = Field(DEFAULT_TTL_SECONDS, alias="ttlSeconds", ge=MIN_TTL_SECONDS, le=MAX_TTL_SECONDS)
    worker_profile: WorkerProfile = Field(WorkerProfile.CPU, alias="workerProfile")
    room: bool = Field(True, description="false: no LiveKit room; audio flows over the control WebSocket only "
                                         "(Palabra 2.x's streams make such sessions)")

    @field_validator("target_languages")
    @classmethod
    def _valid_targets(cls, value: list[str]) -> list[str]:
        return check_target_languages(value)

    @model_validator(mode="after")
    def _servable(self) -> "SessionSpec":
        """A CPU session asks only for pairs the worker's engines serve (api/lingo_api/languages.json):
        refused here, naming the missing stage, rather than by a worker that fails later. The
        GPU profile's engines come from a mounted model directory, checked by the worker."""
        if self.worker_profile == WorkerProfile.CPU.value:
            problems = [p for t in self.target_languages if (p := pair_problem(self.source_language, t))]
            if not self.target_languages and (problem := recognition_problem(self.source_language)):
                problems.append(problem)  # a transcription-only session
            if problems:
                raise ValueError("; ".join(problems))
        return self

    def to_crd(self) -> dict:
        return self.model_dump(by_alias=True, mode="json")
