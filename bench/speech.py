"""The benchmarks' source speech: a sentence spoken by the best voice installed here.

Festival where the worker has a natural voice for the language (worker/lingo_worker/engines/tts_festival.py),
espeak-ng otherwise, by a close voice where espeak-ng has none of its own. Silence around the
speech is cut, so the end of the samples is the end of speech.
"""

from __future__ import annotations

import functools
import subprocess
import tempfile
import wave

import numpy as np

from lingo_worker.engines.base import EngineUnavailable
from lingo_worker.engines.tts_festival import FestivalSynthesizer

# Galician spoken by the Portuguese voice, Occitan by the Catalan, Nynorsk by the Bokmål.
ESPEAK_VOICES = {"en": "en-us", "nn": "nb", "gl": "pt", "oc": "ca"}
SILENCE = 500  # |sample| at or below which a sample counts as silence


@functools.cache
def _festival() -> FestivalSynthesizer | None:
    try:
        return FestivalSynthesizer()
    except EngineUnavailable:
        return None


def speak(text: str, language: str) -> tuple[np.ndarray, int]:
    """(int16 samples, sample rate) of `text` spoken in `language`."""
    festival = _festival()
    if festival and festival.supports(language):
        spoken = festival.synthesize(text, language)
        samples, rate = spoken.samples, spoken.sample_rate
    else:
        with tempfile.NamedTemporaryFile(suffix=".wav") as out:
            subprocess.run(["espeak-ng", "-v", ESPEAK_VOICES.get(language, language), "-s", "150", "-w", out.name,
                            text], check=True, capture_output=True)
            with wave.open(out.name) as wav:
                samples, rate = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16), wav.getframerate()
    voiced = np.flatnonzero(np.abs(samples) > SILENCE)
    return samples[voiced[0]:voiced[-1] + 1], rate


def close() -> None:
    if _festival():
        _festival().close()
