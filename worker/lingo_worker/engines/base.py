"""The interfaces every engine implements. Audio is mono float32 in [-1, 1]."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

ASR_SAMPLE_RATE = 16_000
# Voices end what they say with up to a quarter of a second of silence (espeak-ng), which in the
# speech backlog holds back the unit after it: only this much silence is kept around speech.
KEPT_SILENCE_SECONDS = 0.06
SILENCE_LEVEL = 100  # int16 samples this quiet or quieter are silence (-50 dBFS)


class EngineUnavailable(RuntimeError):
    """An engine cannot run here: missing model directory, package or language pair."""


@dataclass
class Synthesized:
    samples: np.ndarray  # int16
    sample_rate: int

    def trimmed(self) -> "Synthesized":
        """The speech with at most KEPT_SILENCE_SECONDS of silence before and after it."""
        loud = np.flatnonzero(np.abs(self.samples.astype(np.int32)) > SILENCE_LEVEL)
        if not len(loud):
            return self
        kept = int(KEPT_SILENCE_SECONDS * self.sample_rate)
        start, end = max(0, loud[0] - kept), min(len(self.samples), loud[-1] + 1 + kept)
        return Synthesized(self.samples[start:end], self.sample_rate)


@dataclass(frozen=True)
class RecognizedWord:
    text: str  # as the recognizer wrote it, punctuation included, no surrounding spaces
    start: float  # seconds from the start of the audio it was recognized in
    end: float
    probability: float = 1.0  # the recognizer's confidence in the word


class SpeechRecognizer(ABC):
    name: str
    # Whether transcribe() may run in two threads at once (a partial beside a final result).
    thread_safe: bool = False
    # Whether transcribe_words() times each word from the audio (else it spreads them evenly, and
    # simultaneous interpretation, which commits words by their times, falls back to consecutive).
    word_timestamps: bool = False

    @abstractmethod
    def supports(self, language: str) -> bool: ...

    @abstractmethod
    def transcribe(self, audio: np.ndarray, language: str) -> str:
        """Transcribe 16 kHz audio; blocking, called from a worker thread."""

    def transcribe_words(self, audio: np.ndarray, language: str) -> list[RecognizedWord]:
        """The words of 16 kHz audio with their times; this default spreads the words of
        transcribe() evenly over the audio."""
        words = self.transcribe(audio, language).split()
        step = len(audio) / ASR_SAMPLE_RATE / max(len(words), 1)
        return [RecognizedWord(word, i * step, (i + 1) * step) for i, word in enumerate(words)]


class Translator(ABC):
    name: str

    @abstractmethod
    def supports(self, source: str, target: str) -> bool: ...

    @abstractmethod
    def translate(self, text: str, source: str, target: str) -> str: ...


class SpeechSynthesizer(ABC):
    name: str

    @abstractmethod
    def supports(self, language: str) -> bool: ...

    @abstractmethod
    def synthesize(self, text: str, language: str, voice: str | None = None, rate: int | None = None,
                   tempo: float = 1.0) -> Synthesized:
        """Speech for `text`; `tempo` above 1 speaks faster than the voice's (or `rate`'s) pace."""


class VoiceActivityDetector(ABC):
    """Scores fixed-size 16 kHz windows with a speech probability."""

    window_samples: int

    @abstractmethod
    def speech_probability(self, window: np.ndarray) -> float: ...

    @abstractmethod
    def reset(self) -> None: ...
