"""The interfaces every engine implements. Audio is mono float32 in [-1, 1]."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

ASR_SAMPLE_RATE = 16_000


class EngineUnavailable(RuntimeError):
    """An engine cannot run here: missing model directory, package or language pair."""


@dataclass
class Synthesized:
    samples: np.ndarray  # int16
    sample_rate: int


class SpeechRecognizer(ABC):
    name: str
    # Whether transcribe() may run in two threads at once (a partial beside a final result).
    thread_safe: bool = False

    @abstractmethod
    def supports(self, language: str) -> bool: ...

    @abstractmethod
    def transcribe(self, audio: np.ndarray, language: str) -> str:
        """Transcribe 16 kHz audio; blocking, called from a worker thread."""


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
    def synthesize(self, text: str, language: str, voice: str | None = None, rate: int | None = None) -> Synthesized: ...


class VoiceActivityDetector(ABC):
    """Scores fixed-size 16 kHz windows with a speech probability."""

    window_samples: int

    @abstractmethod
    def speech_probability(self, window: np.ndarray) -> float: ...

    @abstractmethod
    def reset(self) -> None: ...
