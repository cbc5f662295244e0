"""Unit tests of the Palabra task mapping (worker/lingo_worker/protocol.py): what the SDK sends becomes the
worker's task, fields it does not implement are listed, malformed tasks are refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lingo_worker.protocol import StreamSettings, TaskMessageError, parse_set_task
from lingo_worker.task import TranslationTask

# What palabra-ai 0.6.11 sends for Config(SourceLang(EN), [TargetLang(ES)]) in each mode.
WEBRTC = {"pipeline": {"transcription": {"source_language": "en"}, "translations": [{"target_language": "es"}]},
          "input_stream": {"content_type": "audio", "source": {"type": "webrtc"}},
          "output_stream": {"content_type": "audio", "target": {"type": "webrtc"}}}
WS = {"pipeline": WEBRTC["pipeline"],
      "input_stream": {"content_type": "audio",
                       "source": {"type": "ws", "format": "pcm_s16le", "sample_rate": 16000, "channels": 1}},
      "output_stream": {"content_type": "audio",
                        "target": {"type": "ws", "format": "pcm_s16le", "sample_rate": 24000, "channels": 1}}}


def test_the_sdks_webrtc_task_maps_to_languages_and_webrtc_streams():
    request = parse_set_task(WEBRTC)
    assert request.update.source_language == "en" and request.update.target_languages == ["es"]
    assert request.streams == StreamSettings() and request.ignored_fields == []


def test_the_sdks_ws_task_asks_for_audio_over_the_socket():
    streams = parse_set_task(WS).streams
    assert streams.audio_in_over_ws and streams.audio_out_over_ws
    assert (streams.input_rate, streams.output_rate) == (16000, 24000)


def test_tuning_fields_map_where_they_can_and_are_listed_where_they_cannot():
    task = {"pipeline": {
        "transcription": {"source_language": "en", "segment_confirmation_silence_threshold": 0.7, "asr_model": "auto",
                          "sentence_splitter": {"enabled": True}},
        "translations": [{"target_language": "ca", "speech_generation": {"voice_id": "default_low"}}],
        "preprocessing": {"vad_threshold": 0.6, "pre_vad_denoise": False},
        "translation_queue_configs": {"global": {"desired_queue_level_ms": 5000, "tempo_decay": 0.35}}}}
    request = parse_set_task(task)
    assert request.update.options == {"vad_threshold": 0.6, "min_silence_ms": 700, "desired_queue_ms": 5000}
    updated = TranslationTask(source_language="en", target_languages=["es"]).updated(request.update)
    assert updated.target_languages == ["ca"] and updated.options.min_silence_ms == 700
    assert sorted(request.ignored_fields) == [
        "pipeline.preprocessing.pre_vad_denoise", "pipeline.transcription.asr_model",
        "pipeline.transcription.sentence_splitter.enabled",
        "pipeline.translation_queue_configs.global.tempo_decay",
        "pipeline.translations.0.speech_generation.voice_id"]


def test_palabra_interpretation_fields_become_options():
    task = {"pipeline": {
        "transcription": {"source_language": "en", "only_confirm_by_silence": True,
                          "sentence_splitter": {"advanced": {"force_split_min_seconds": 6.0}}},
        "translations": [{"target_language": "es", "translate_partial_transcriptions": True}],
        "translation_queue_configs": {"global": {"desired_queue_level_ms": 5000, "max_queue_level_ms": 20000,
                                                 "auto_tempo": True, "min_tempo": 1.15, "max_tempo": 1.45}}}}
    request = parse_set_task(task)
    assert request.update.options == {
        "interpretation": "consecutive", "max_segment_seconds": 6.0, "translate_partials": True,
        "desired_queue_ms": 5000, "max_queue_ms": 20000, "auto_tempo": True, "min_tempo": 1.15, "max_tempo": 1.45}
    assert request.ignored_fields == []
    options = TranslationTask(source_language="en", target_languages=["es"]).updated(request.update).options
    assert not options.simultaneous and options.unit_seconds("en") == 6.0


def test_the_flat_task_of_this_project_still_works():
    request = parse_set_task({"target_languages": ["es", "ca"], "options": {"speech_rate": 180}})
    assert request.update.target_languages == ["es", "ca"] and request.streams is None


@pytest.mark.parametrize("task", [
    {"pipeline": []},
    {"pipeline": {"translations": {"target_language": "es"}}},
    {"pipeline": {"translations": ["es"]}},
    {"input_stream": {"source": {"type": "sip"}}},
    {"input_stream": {"source": {"type": "ws", "format": "mp3"}}},
    {"input_stream": {"source": {"type": "ws", "sample_rate": 1_000_000}}},
    {"output_stream": {"target": {"type": "ws", "channels": 6}}},
    {"output_stream": "ws"},
])
def test_malformed_tasks_are_refused(task):
    with pytest.raises(TaskMessageError):
        parse_set_task(task)


def test_a_target_that_is_no_language_code_is_a_validation_error():
    with pytest.raises(ValidationError):
        parse_set_task({"pipeline": {"translations": [{"target_language": "español!"}]}})
