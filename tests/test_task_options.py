"""The translation task's options: permissions, merging, validation, and the interpretation mode."""

import pytest
from pydantic import ValidationError

from lingo_api.session_tokens import Permission
from lingo_worker.task import (CONSECUTIVE_UNIT_SECONDS, ENGLISH_UNIT_SECONDS, SIMULTANEOUS_UNIT_SECONDS, TaskOptions,
                               TaskUpdate, TranslationTask)


def test_languages_and_session_wide_options_need_write_captions_only_edit():
    assert TaskUpdate(target_languages=["ca"]).required_permission() is Permission.WRITE
    assert TaskUpdate(source_language="en").required_permission() is Permission.WRITE
    # what issue 24's listener sent to switch the translation off for everyone
    for option in ({"vad_threshold": 0.95}, {"asr_engine": "pocketsphinx"}, {"min_silence_ms": 3000},
                   {"speech_rate": 400}, {"voices": {"es": "x"}}, {"max_queue_ms": 1000}, {"interpretation": "consecutive"}):
        assert TaskUpdate(options=option).required_permission() is Permission.WRITE, option
    assert TaskUpdate(options={"translate_partials": True, "partial_interval_ms": 1000}).required_permission() \
        is Permission.EDIT


def test_option_updates_merge_and_revalidate():
    task = TranslationTask(source_language="en", target_languages=["es"])
    updated = task.updated(TaskUpdate(options={"vad_threshold": 0.7}))
    assert updated.options.vad_threshold == 0.7 and updated.options.min_silence_ms == 400 and updated.revision == 1
    with pytest.raises(ValueError):
        task.updated(TaskUpdate(options={"vad_threshold": 2}))


def test_the_unit_cap_follows_the_interpretation_mode_unless_set():
    assert TaskOptions().simultaneous and TaskOptions().unit_seconds("it") == SIMULTANEOUS_UNIT_SECONDS
    assert TaskOptions().unit_seconds("en-US") == ENGLISH_UNIT_SECONDS
    consecutive = TaskOptions(interpretation="consecutive")
    assert not consecutive.simultaneous and consecutive.unit_seconds("it") == CONSECUTIVE_UNIT_SECONDS
    assert TaskOptions(max_segment_seconds=4).unit_seconds("en") == 4


@pytest.mark.parametrize("options", [
    {"interpretation": "whenever"},
    {"min_tempo": 1.4, "max_tempo": 1.2},
    {"desired_queue_ms": 8000, "max_queue_ms": 6000},
    {"max_tempo": 3},
])
def test_contradictory_or_out_of_range_backlog_options_are_refused(options):
    with pytest.raises(ValidationError):
        TaskOptions(**options)
