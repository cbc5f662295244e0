"""The control messages in Palabra's shapes (shared/palabra-protocol.md), so apps written for
Palabra's streaming API talk to this worker unchanged.

`parse_set_task` accepts both Palabra's nested task (`pipeline.transcription.source_language`,
`pipeline.translations[].target_language`, `input_stream`, `output_stream`, ...) and this
project's flat one (`source_language`, `target_languages`, `options`). Nested fields that map
onto the worker's options are honoured; the others are accepted and listed in
`current_task.ignored_fields`. The builders below give every outgoing message its Palabra shape.
"""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass, field

from .task import TaskUpdate

PCM_FORMAT = "pcm_s16le"
ZLIB_PCM_FORMAT = "zlib_pcm_s16le"  # output only: each output_audio_data chunk zlib-compressed (Palabra 2.x)
DEFAULT_INPUT_RATE = 16_000
DEFAULT_OUTPUT_RATE = 24_000
STREAM_TYPES = ("webrtc", "ws")


# The messages pipeline.allowed_message_types chooses among; others are always sent.
TRANSCRIPT_TYPES = frozenset({"partial_transcription", "validated_transcription", "translated_transcription",
                              "partial_translated_transcription"})


# A dotted path of field names and list indexes, as Palabra's task has them.
FIELD_PATH = re.compile(r"^[A-Za-z0-9_]{1,64}(\.[A-Za-z0-9_]{1,64}){0,9}$")
MAX_IGNORED_FIELDS = 64


class TaskMessageError(ValueError):
    """set_task is malformed; the message says what to fix."""


@dataclass
class StreamSettings:
    """Where a client's audio comes from and where it wants the translation (Palabra's
    input_stream/output_stream): LiveKit tracks (webrtc) or this WebSocket (ws)."""

    input_type: str = "webrtc"
    input_rate: int = DEFAULT_INPUT_RATE
    input_channels: int = 1
    output_type: str = "webrtc"
    output_rate: int = DEFAULT_OUTPUT_RATE
    output_channels: int = 1
    output_zlib: bool = False
    # Palabra's pipeline.allowed_message_types: the transcript kinds this client wants (None: all)
    allowed_message_types: frozenset[str] | None = None

    def wants(self, message_type: str) -> bool:
        return self.allowed_message_types is None or message_type not in TRANSCRIPT_TYPES \
            or message_type in self.allowed_message_types

    @property
    def audio_in_over_ws(self) -> bool:
        return self.input_type == "ws"

    @property
    def audio_out_over_ws(self) -> bool:
        return self.output_type == "ws"


@dataclass
class SetTask:
    update: TaskUpdate
    streams: StreamSettings | None = None
    ignored_fields: list[str] = field(default_factory=list)


def _given(container: dict, key: str, default):
    """The value at `key`, `default` when absent or null (an empty list stays a list)."""
    value = container.get(key)
    return default if value is None else value


# Palabra's task fields (below `pipeline`) that are the worker's options under another name.
_QUEUE = "translation_queue_configs.global."
PALABRA_OPTIONS = {
    "transcription.sentence_splitter.advanced.force_split_min_seconds": "max_segment_seconds",
    _QUEUE + "desired_queue_level_ms": "desired_queue_ms",
    _QUEUE + "max_queue_level_ms": "max_queue_ms",
    _QUEUE + "auto_tempo": "auto_tempo",
    _QUEUE + "min_tempo": "min_tempo",
    _QUEUE + "max_tempo": "max_tempo",
}


def _at(container, path: str):
    """The value at a dotted path of nested objects, None where any step is missing."""
    for key in path.split("."):
        if not isinstance(container, dict):
            return None
        container = container.get(key)
    return container


def _leaves(value, prefix: str) -> list[str]:
    if isinstance(value, dict) and value:
        return [leaf for key, child in value.items() for leaf in _leaves(child, f"{prefix}.{key}" if prefix else key)]
    return [prefix]


def _stream(spec, key: str, default_rate: int) -> tuple[str, int, int, bool]:
    """(type, sample rate, channels, zlib) of an input_stream.source or output_stream.target."""
    if spec is None:
        return "webrtc", default_rate, 1, False
    if not isinstance(spec, dict) or not isinstance(spec.get(key), dict):
        raise TaskMessageError(f"expected {{'{key}': {{'type': 'webrtc' | 'ws', ...}}}}")
    end = spec[key]
    kind = end.get("type", "webrtc")
    if kind not in STREAM_TYPES:
        raise TaskMessageError(f"{key}.type must be 'webrtc' or 'ws'")
    formats = (PCM_FORMAT, ZLIB_PCM_FORMAT) if key == "target" else (PCM_FORMAT,)
    if end.get("format", PCM_FORMAT) not in formats:
        raise TaskMessageError(f"{key}.format: only {' or '.join(formats)} is supported")
    rate, channels = end.get("sample_rate", default_rate), end.get("channels", 1)
    if not isinstance(rate, int) or not 8000 <= rate <= 48000:
        raise TaskMessageError(f"{key}.sample_rate must be an integer from 8000 to 48000")
    if channels not in (1, 2):
        raise TaskMessageError(f"{key}.channels must be 1 or 2")
    return kind, rate, channels, end.get("format") == ZLIB_PCM_FORMAT


def parse_set_task(data: dict) -> SetTask:
    """The task update a set_task asks for; TaskMessageError or pydantic's ValidationError if invalid."""
    if not any(key in data for key in ("pipeline", "input_stream", "output_stream")):
        return SetTask(TaskUpdate.model_validate(data))
    pipeline = _given(data, "pipeline", {})
    if not isinstance(pipeline, dict):
        raise TaskMessageError("pipeline must be an object")
    transcription = _given(pipeline, "transcription", {})
    translations = _given(pipeline, "translations", [])
    if not isinstance(transcription, dict) or not isinstance(translations, list) \
            or not all(isinstance(t, dict) for t in translations):
        raise TaskMessageError("pipeline.transcription must be an object and pipeline.translations a list of objects")
    preprocessing = _given(pipeline, "preprocessing", {})
    if not isinstance(preprocessing, dict):
        raise TaskMessageError("pipeline.preprocessing must be an object")

    used = {"pipeline.transcription.source_language"}
    options: dict = {}
    if "vad_threshold" in preprocessing:
        options["vad_threshold"] = preprocessing["vad_threshold"]
        used.add("pipeline.preprocessing.vad_threshold")
    silence = transcription.get("segment_confirmation_silence_threshold")
    if isinstance(silence, (int, float)) and not isinstance(silence, bool):
        options["min_silence_ms"] = round(silence * 1000)
        used.add("pipeline.transcription.segment_confirmation_silence_threshold")
    if isinstance(transcription.get("only_confirm_by_silence"), bool):  # Palabra's consecutive mode
        options["interpretation"] = "consecutive" if transcription["only_confirm_by_silence"] else "simultaneous"
        used.add("pipeline.transcription.only_confirm_by_silence")
    for path, option in PALABRA_OPTIONS.items():
        if (value := _at(pipeline, path)) is not None:
            options[option] = value
            used.add(f"pipeline.{path}")
    targets = []
    for index, translation in enumerate(translations):
        targets.append(translation.get("target_language"))
        used.add(f"pipeline.translations.{index}.target_language")
        if "translate_partial_transcriptions" in translation:
            # One task-wide switch: partial translations for every target if any asks for them.
            options["translate_partials"] = options.get("translate_partials") or \
                translation["translate_partial_transcriptions"] is True
            used.add(f"pipeline.translations.{index}.translate_partial_transcriptions")
    update = TaskUpdate.model_validate({
        "source_language": transcription.get("source_language"),
        "target_languages": targets or None,
        "options": options or None,
    })

    input_type, input_rate, input_channels, _ = _stream(data.get("input_stream"), "source", DEFAULT_INPUT_RATE)
    output_type, output_rate, output_channels, zlib_output = _stream(data.get("output_stream"), "target",
                                                                     DEFAULT_OUTPUT_RATE)
    allowed = pipeline.get("allowed_message_types")
    if allowed is not None:
        if not isinstance(allowed, list) or not all(isinstance(kind, str) for kind in allowed):
            raise TaskMessageError("pipeline.allowed_message_types must be a list of message types")
        allowed = frozenset(allowed)
        used.add("pipeline.allowed_message_types")
    streams = StreamSettings(input_type, input_rate, input_channels, output_type, output_rate, output_channels,
                             zlib_output, allowed)
    for prefix, end in (("input_stream", "source"), ("output_stream", "target")):
        for key in ("type", "format", "sample_rate", "channels"):
            used.add(f"{prefix}.{end}.{key}")
        used.add(f"{prefix}.content_type")

    indexed = {**data, "pipeline": {**pipeline, "translations": dict(enumerate(translations))}}
    ignored = [leaf for leaf in _leaves(indexed, "") if leaf not in used]
    # ignored_fields goes to every participant in current_task: names of a field's shape only.
    if len(ignored) > MAX_IGNORED_FIELDS or not all(FIELD_PATH.fullmatch(leaf) for leaf in ignored):
        raise TaskMessageError(f"set_task has fields that are not task fields (at most {MAX_IGNORED_FIELDS} "
                               "unknown fields, names of letters, digits and underscores)")
    return SetTask(update, streams, ignored)


# -- outgoing messages ---------------------------------------------------------------------


def transcription(transcription_id: str, language: str, text: str, start: float, end: float,
                  participant: str = "") -> dict:
    """Palabra's transcription payload (partial, validated and translated alike)."""
    now = time.time()
    return {
        "transcription": {
            "transcription_id": transcription_id,
            "language": language,
            "text": text,
            "segments": [{"text": text, "start": round(start, 3), "end": round(end, 3),
                          "start_timestamp": round(now - (end - start), 3), "end_timestamp": round(now, 3)}],
        },
        "participant": participant,
    }


def pipeline_timings(transcription_id: str, timings: dict[str, float]) -> dict:
    return {"transcription_id": transcription_id, "timings": timings}


def task_status(command: str, event: str, state: str) -> dict:
    """Palabra 2.x's acknowledgement of a command (`event`: started, updated, resumed, paused)."""
    return {"command": command, "event": event, "task_status": state}


def error(code: str, desc: str) -> dict:
    return {"code": code, "desc": desc}


def warning(code: str, message: str, **details) -> dict:
    """Palabra's `warning` {code, message}, with what it concerns."""
    return {"code": code, "message": message, **details}


def tts_buffer_stats(levels: dict[str, tuple[int, int]]) -> dict:
    """Per target language (current, max) queue level in milliseconds."""
    stats: dict = {"timestamp": round(time.time(), 3)}
    for language, (current, maximum) in levels.items():
        stats[language] = {"current_queue_level_ms": current, "max_queue_level_ms": maximum}
    return {"stats": stats}


def output_audio(pcm: bytes, language: str, transcription_id: str, last_chunk: bool) -> dict:
    return {"data": base64.b64encode(pcm).decode(), "language": language, "transcription_id": transcription_id,
            "last_chunk": last_chunk}
