"""Which engines a worker runs: CPU defaults from registry packages, GPU engines from /models.

CPU profile: silero VAD, multilingual Whisper base (Whisper tiny.en for English sources, or
PocketSphinx, loaded on first use), Apertium kept warm per pair, Festival's HTS voices where
Debian has one and espeak-ng for the rest.
GPU profile: silero VAD, Whisper from <model_dir>/whisper and NLLB from <model_dir>/nllb on
CUDA, espeak-ng. A GPU worker without its model directory refuses to start, with a message
that names the missing path; nothing is ever downloaded.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .base import EngineUnavailable, SpeechRecognizer, SpeechSynthesizer, Translator, VoiceActivityDetector


@dataclass
class Engines:
    vad_factory: type
    # name -> a loaded recognizer, or a function that loads it (on first use, once)
    recognizers: dict[str, SpeechRecognizer | Callable[[], SpeechRecognizer]]
    default_recognizer: str
    translator: Translator
    synthesizer: SpeechSynthesizer
    english_recognizer: str | None = None
    problems: list[str] = field(default_factory=list)
    _loading: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def new_vad(self) -> VoiceActivityDetector:
        return self.vad_factory()

    def recognizer_for(self, language: str, name: str | None = None, load: bool = True) -> SpeechRecognizer | None:
        """The recognizer a task uses: the one it names, else the English one for English
        (faster, and better on our measurements) and the default for everything else. Not
        `load`: None unless it is loaded already (a load takes seconds)."""
        if name is None and self.english_recognizer and language.split("-")[0].lower() == "en":
            name = self.english_recognizer
        return self.recognizer(name, load)

    def recognizer(self, name: str | None, load: bool = True) -> SpeechRecognizer | None:
        name = name if name in self.recognizers else self.default_recognizer
        if not load:
            loaded = self.recognizers[name]
            return loaded if isinstance(loaded, SpeechRecognizer) else None
        with self._loading:
            loaded = self.recognizers[name]
            if not isinstance(loaded, SpeechRecognizer):
                loaded = self.recognizers[name] = loaded()
        return loaded

    def check_languages(self, source: str, targets: list[str], asr_engine: str | None = None) -> list[str]:
        """Problems with a task's languages, in words; empty when every stage can serve them."""
        problems = []
        recognizer = self.recognizer_for(source, asr_engine)
        if not recognizer.supports(source):
            problems.append(f"speech recognition ({recognizer.name}) does not support source language '{source}'")
        for target in targets:
            if target.split("-")[0] == source.split("-")[0]:
                problems.append(f"target language '{target}' is the source language")
                continue
            if not self.translator.supports(source, target):
                problems.append(f"translation ({self.translator.name}) has no {source}->{target} pair")
            if not self.synthesizer.supports(target):
                problems.append(f"speech synthesis ({self.synthesizer.name}) has no voice for '{target}'")
        return problems


def build_engines(profile: str, model_dir: Path | None, cpu_threads: int = 2, gpu_device: str = "cuda",
                  gpu_compute_type: str = "float16") -> Engines:
    from .asr_pocketsphinx import PocketSphinxRecognizer
    from .asr_whisper import WhisperRecognizer
    from .tts_espeak import EspeakSynthesizer
    from .tts_festival import BestVoice, FestivalSynthesizer
    from .whisper_models import multilingual_base, tiny_en
    from .vad_silero import SileroVoiceActivityDetector

    if profile == "gpu":
        expected = "expected <dir>/whisper and <dir>/nllb in CTranslate2 format"
        if model_dir is None or not model_dir.is_dir():
            raise EngineUnavailable(f"gpu profile needs its model directory mounted (LINGO_MODEL_DIR={model_dir}); {expected}")
        missing = [name for name in ("whisper", "nllb") if not (model_dir / name).is_dir()]
        if missing:
            raise EngineUnavailable(f"gpu profile: {', '.join(str(model_dir / m) for m in missing)} missing ({expected})")
        from .mt_nllb import NllbTranslator

        whisper = WhisperRecognizer(model_dir / "whisper", device=gpu_device, compute_type=gpu_compute_type)
        return Engines(SileroVoiceActivityDetector, {"whisper": whisper}, "whisper",
                       NllbTranslator(model_dir / "nllb", device=gpu_device, compute_type=gpu_compute_type),
                       EspeakSynthesizer())

    from .mt_apertium import ApertiumTranslator

    recognizers: dict = {
        "whisper": WhisperRecognizer(multilingual_base(), threads=cpu_threads),
        "whisper-tiny-en": lambda: WhisperRecognizer(tiny_en(), threads=cpu_threads, name="whisper-tiny-en"),
        "pocketsphinx": PocketSphinxRecognizer,
    }
    try:
        festival = FestivalSynthesizer()
    except EngineUnavailable:
        festival = None
    return Engines(SileroVoiceActivityDetector, recognizers, "whisper", ApertiumTranslator(),
                   BestVoice(festival, EspeakSynthesizer()), english_recognizer="whisper-tiny-en")
