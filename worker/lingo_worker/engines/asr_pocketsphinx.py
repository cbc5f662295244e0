"""PocketSphinx: the lightest CPU recognizer; its PyPI package bundles the en-US model."""

from __future__ import annotations

import numpy as np

from .base import ASR_SAMPLE_RATE, SpeechRecognizer


class PocketSphinxRecognizer(SpeechRecognizer):
    name = "pocketsphinx"

    def __init__(self):
        from pocketsphinx import Decoder

        self._decoder = Decoder(samprate=ASR_SAMPLE_RATE, loglevel="FATAL")

    def supports(self, language: str) -> bool:
        return language.split("-")[0] == "en"

    def transcribe(self, audio: np.ndarray, language: str) -> str:
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes()
        self._decoder.start_utt()
        self._decoder.process_raw(pcm, full_utt=True)
        self._decoder.end_utt()
        hypothesis = self._decoder.hyp()
        return hypothesis.hypstr if hypothesis else ""
