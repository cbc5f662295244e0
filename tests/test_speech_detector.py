"""The speech detector, driven by a scripted VAD (pure logic, no audio engines): where utterances
start, breathe and end; it never cuts speech by length."""

import numpy as np

from lingo_worker.speech_detector import KEPT_SILENCE_SECONDS, PREROLL_SECONDS, SpeechDetector

WINDOW = 512  # 32 ms at 16 kHz
SECONDS = WINDOW / 16000


class ScriptedVad:
    window_samples = WINDOW

    def __init__(self, probabilities):
        self.probabilities = list(probabilities)
        self.resets = 0

    def speech_probability(self, window):
        return self.probabilities.pop(0) if self.probabilities else 0.0

    def reset(self):
        self.resets += 1


def detect(probabilities, threshold=0.5, min_silence_ms=320, chunk_windows=5):
    """Every piece the detector returns for the scripted windows, fed a few windows at a time."""
    vad = ScriptedVad(probabilities)
    detector = SpeechDetector(vad)
    pieces = []
    for start in range(0, len(probabilities), chunk_windows):
        count = min(chunk_windows, len(probabilities) - start)
        pieces += detector.push(np.zeros(count * WINDOW, dtype=np.float32), threshold, min_silence_ms)
    return pieces, vad


def test_an_utterance_ends_after_the_silence_and_keeps_its_preroll():
    pieces, vad = detect([0.0] * 20 + [0.9] * 30 + [0.0] * 12)
    assert [p.ended for p in pieces].count(True) == 1 and pieces[-1].ended and vad.resets == 1
    preroll_windows = int(PREROLL_SECONDS / SECONDS)
    assert abs(pieces[0].start - (20 - preroll_windows) * SECONDS) < 1e-9
    # the pieces are contiguous stream audio: pre-roll, 30 voiced windows, some of the silence
    audio = sum(len(p.audio) for p in pieces) / 16000
    voiced = preroll_windows * SECONDS + 30 * SECONDS
    assert voiced + KEPT_SILENCE_SECONDS - 1e-9 <= audio < voiced + 0.32
    for before, after in zip(pieces, pieces[1:]):
        if len(after.audio):
            assert abs(before.start + len(before.audio) / 16000 - after.start) < 1e-9
    assert abs(sum(p.voiced for p in pieces) - 30 * SECONDS) < 1e-9


def test_long_speech_is_never_cut_by_length():
    pieces, _ = detect([0.9] * 1000)  # 32 s without a pause
    assert not any(p.ended or p.paused for p in pieces)
    assert abs(sum(len(p.audio) for p in pieces) / 16000 - 1000 * SECONDS) < 1e-9


def test_a_breath_is_a_pause_inside_the_utterance():
    pieces, vad = detect([0.9] * 30 + [0.0] * 4 + [0.9] * 30 + [0.0] * 20)
    marks = [("paused" if p.paused else "ended" if p.ended else "") for p in pieces]
    assert marks.count("paused") >= 2 and marks.count("ended") == 1 and vad.resets == 1
    first_pause = marks.index("paused")
    assert sum(len(p.audio) for p in pieces[:first_pause + 1]) / 16000 < 34 * SECONDS + 1e-9


def test_hysteresis_keeps_a_dip_inside_the_utterance():
    pieces, _ = detect([0.9] * 10 + [0.4] * 15 + [0.9] * 10 + [0.0] * 12)
    assert sum(p.paused for p in pieces) == 1 and sum(p.ended for p in pieces) == 1
    pause = next(i for i, p in enumerate(pieces) if p.paused)
    assert sum(len(p.audio) for p in pieces[:pause + 1]) / 16000 > 35 * SECONDS  # in the final silence


def test_the_end_of_the_stream_ends_the_utterance():
    vad = ScriptedVad([0.9] * 10)
    detector = SpeechDetector(vad)
    detector.push(np.zeros(10 * WINDOW, dtype=np.float32), 0.5, 400)
    last = detector.end()
    assert last is not None and last.ended and detector.end() is None
