"""The VAD segmenter's state machine, driven by a scripted detector (pure logic, no audio engines)."""

import numpy as np

from lingo_api.session_tokens import Permission
from lingo_worker.segmenter import SpeechSegmenter
from lingo_worker.task import TaskOptions, TaskUpdate, TranslationTask

WINDOW = 512  # 32 ms at 16 kHz


class ScriptedVad:
    window_samples = WINDOW

    def __init__(self, probabilities):
        self.probabilities = list(probabilities)
        self.resets = 0

    def speech_probability(self, window):
        return self.probabilities.pop(0) if self.probabilities else 0.0

    def reset(self):
        self.resets += 1


def feed(segmenter, windows, options, now=0.0):
    closed = []
    for i in range(windows):
        closed += segmenter.push(np.zeros(WINDOW, dtype=np.float32), now + i * 0.032, options)
    return closed


def test_segment_closes_after_the_configured_silence():
    options = TaskOptions(min_silence_ms=320)  # 10 windows
    vad = ScriptedVad([0.0] * 20 + [0.9] * 30 + [0.0] * 12)
    segmenter = SpeechSegmenter(vad)
    closed = feed(segmenter, 62, options)
    assert len(closed) == 1 and vad.resets == 1
    segment = closed[0]
    # 0.3 s of pre-roll + 30 voiced windows + 0.1 s kept of the trailing silence
    assert abs(len(segment.audio) / 16000 - (9 * 0.032 + 30 * 0.032 + 0.1)) < 0.04
    assert abs(segment.speech_ended_at - 49 * 0.032) < 1e-6


def test_long_speech_is_cut_at_max_segment_length():
    options = TaskOptions(max_segment_seconds=1.0)
    segmenter = SpeechSegmenter(ScriptedVad([0.9] * 100))
    closed = feed(segmenter, 100, options)
    assert len(closed) == 3 and [s.index for s in closed] == [0, 1, 2]
    assert all(0.95 < len(s.audio) / 16000 < 1.1 for s in closed)


def test_hysteresis_keeps_a_dip_inside_the_segment():
    options = TaskOptions(vad_threshold=0.5, min_silence_ms=320)
    segmenter = SpeechSegmenter(ScriptedVad([0.9] * 10 + [0.4] * 15 + [0.9] * 10 + [0.0] * 12))
    assert len(feed(segmenter, 47, options)) == 1


def test_languages_need_write_and_options_only_edit():
    assert TaskUpdate(target_languages=["ca"]).required_permission() is Permission.WRITE
    assert TaskUpdate(source_language="en").required_permission() is Permission.WRITE
    assert TaskUpdate(options={"speech_rate": 200}).required_permission() is Permission.EDIT


def test_option_updates_merge_and_revalidate():
    task = TranslationTask(source_language="en", target_languages=["es"])
    updated = task.updated(TaskUpdate(options={"vad_threshold": 0.7}))
    assert updated.options.vad_threshold == 0.7 and updated.options.min_silence_ms == 400 and updated.revision == 1
    try:
        task.updated(TaskUpdate(options={"vad_threshold": 2}))
    except ValueError:
        pass
    else:
        raise AssertionError("an out-of-range option must be rejected")
