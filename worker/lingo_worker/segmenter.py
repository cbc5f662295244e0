"""Cuts a 16 kHz audio stream into speech segments with a voice activity detector."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engines.base import ASR_SAMPLE_RATE, VoiceActivityDetector
from .task import TaskOptions

PREROLL_SECONDS = 0.3  # kept before the first voiced window so word onsets are not clipped
HYSTERESIS = 0.15  # a window counts as silence only below threshold - HYSTERESIS


@dataclass
class Segment:
    index: int
    audio: np.ndarray  # float32, 16 kHz
    speech_ended_at: float  # monotonic time the last voiced window arrived


# The silence that ends an utterance shrinks as the utterance grows: a pause after several
# seconds of speech is most likely the end of it, one after a word or two may be a breath.
SHRINK_MS_PER_SECOND = 50
SHORTEST_FRACTION = 0.5


def end_of_speech_ms(min_silence_ms: int, speech_seconds: float) -> float:
    """Milliseconds of silence that close an utterance of `speech_seconds` (adaptive window)."""
    return max(min_silence_ms * SHORTEST_FRACTION, min_silence_ms - SHRINK_MS_PER_SECOND * speech_seconds)


class SpeechSegmenter:
    def __init__(self, vad: VoiceActivityDetector):
        self._vad = vad
        self._window = vad.window_samples
        self._pending = np.zeros(0, dtype=np.float32)
        self._preroll: list[np.ndarray] = []
        self._speech: list[np.ndarray] = []
        self._silence_samples = 0
        self._last_voiced_at = 0.0
        self._count = 0

    @property
    def in_speech(self) -> bool:
        return bool(self._speech)

    @property
    def next_index(self) -> int:
        return self._count

    def current_audio(self) -> np.ndarray | None:
        return np.concatenate(self._speech) if self._speech else None

    def push(self, samples: np.ndarray, now: float, options: TaskOptions) -> list[Segment]:
        """Feed audio; returns the segments this audio closed."""
        self._pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        closed: list[Segment] = []
        while len(self._pending) >= self._window:
            window, self._pending = self._pending[: self._window], self._pending[self._window :]
            probability = self._vad.speech_probability(window)
            if not self._speech:
                if probability >= options.vad_threshold:
                    self._speech = [*self._preroll, window]
                    self._silence_samples, self._last_voiced_at = 0, now
                else:
                    self._preroll.append(window)
                    while len(self._preroll) * self._window > PREROLL_SECONDS * ASR_SAMPLE_RATE:
                        self._preroll.pop(0)
                continue
            self._speech.append(window)
            if probability < options.vad_threshold - HYSTERESIS:
                self._silence_samples += self._window
            else:
                self._silence_samples, self._last_voiced_at = 0, now
            length = len(self._speech) * self._window / ASR_SAMPLE_RATE  # windows are all one size
            if self._silence_samples * 1000 >= end_of_speech_ms(options.min_silence_ms, length) * ASR_SAMPLE_RATE \
                    or length >= options.max_segment_seconds:
                closed.append(self._close())
        return closed

    def flush(self) -> Segment | None:
        return self._close() if self._speech else None

    def _close(self) -> Segment:
        # Trailing silence is dropped (all but 0.1 s) to keep recognition fast.
        audio = np.concatenate(self._speech)
        keep = max(len(audio) - self._silence_samples + ASR_SAMPLE_RATE // 10, 0)
        segment = Segment(self._count, audio[:keep], self._last_voiced_at)
        self._count += 1
        self._speech, self._preroll, self._silence_samples = [], [], 0
        self._vad.reset()
        return segment
