"""espeak-ng speech synthesis (Debian package espeak-ng): ~100 languages, fully offline."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from functools import lru_cache

import numpy as np

from .base import EngineUnavailable, SpeechSynthesizer, Synthesized
from .languages import base_language


DEFAULT_RATE = 160  # words per minute when the caller gives no rate


class EspeakSynthesizer(SpeechSynthesizer):
    name = "espeak-ng"

    def __init__(self):
        self._binary = shutil.which("espeak-ng")
        if not self._binary:
            raise EngineUnavailable("espeak-ng is not installed (Debian package 'espeak-ng')")

    @lru_cache(maxsize=64)
    def supports(self, language: str) -> bool:
        listing = subprocess.run([self._binary, f"--voices={base_language(language)}"], capture_output=True, text=True)
        return len(listing.stdout.strip().splitlines()) > 1

    def synthesize(self, text: str, language: str, voice: str | None = None, rate: int | None = None,
                   tempo: float = 1.0) -> Synthesized:
        words_per_minute = round((rate or DEFAULT_RATE) * tempo)
        argv = [self._binary, "--stdout", "-v", voice or language.lower(), "-s", str(words_per_minute), "--", text]
        result = subprocess.run(argv, capture_output=True, timeout=30)
        if result.returncode != 0 or not result.stdout:
            raise RuntimeError(f"espeak-ng failed: {result.stderr.decode(errors='replace').strip()[:200]}")
        with wave.open(io.BytesIO(result.stdout)) as wav:
            samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
            return Synthesized(samples=samples, sample_rate=wav.getframerate())
