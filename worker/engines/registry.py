"""Which engines a worker runs: CPU defaults from registry packages, GPU engines from /models.

CPU profile: silero VAD, Whisper tiny.en (or PocketSphinx), Apertium, espeak-ng.
GPU profile: silero VAD, Whisper from <model_dir>/whisper and NLLB from <model_dir>/nllb on
CUDA, espeak-ng. A GPU worker without its model directory refuses to start, with a message
that names the missing path; nothing is ever downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .base import EngineUnavailable, SpeechRecognizer, SpeechSynthesizer, Translator, VoiceActivityDetector


@dataclass
class Engines:
    vad_factory: type
    recognizers: dict[str, SpeechRecognizer]
    default_recognizer: str
    translator: Translator
    synthesizer: SpeechSynthesizer
    problems: list[str] = field(default_factory=list)

    def new_vad(self) -> VoiceActivityDetector:
        return self.vad_factory()

    def recognizer(self, name: str | None) -> SpeechRecognizer:
        return self.recognizers.get(name or self.default_recognizer) or self.recognizers[self.default_recognizer]

    def check_languages(self, source: str, targets: list[str], asr_engine: str | None = None) -> list[str]:
        """Problems with a task's languages, in words; empty when every stage can serve them."""
        problems = []
        recognizer = self.recognizer(asr_engine)
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


def build_engines(profile: str, model_dir: Path | None, cpu_threads: int = 2) -> Engines:
    from .asr_pocketsphinx import PocketSphinxRecognizer
    from .asr_whisper import WhisperRecognizer, packaged_tiny_en
    from .tts_espeak import EspeakSynthesizer
    from .vad_silero import SileroVoiceActivityDetector

    if profile == "gpu":
        if model_dir is None or not model_dir.is_dir():
            raise EngineUnavailable(
                f"gpu profile needs its model directory mounted (LINGO_MODEL_DIR={model_dir}); "
                "expected <dir>/whisper and <dir>/nllb in CTranslate2 format"
            )
        from .mt_nllb import NllbTranslator

        whisper = WhisperRecognizer(model_dir / "whisper", device="cuda", compute_type="float16")
        return Engines(SileroVoiceActivityDetector, {"whisper": whisper}, "whisper",
                       NllbTranslator(model_dir / "nllb", device="cuda"), EspeakSynthesizer())

    from .mt_apertium import ApertiumTranslator

    recognizers: dict[str, SpeechRecognizer] = {
        "whisper": WhisperRecognizer(packaged_tiny_en(), threads=cpu_threads),
        "pocketsphinx": PocketSphinxRecognizer(),
    }
    return Engines(SileroVoiceActivityDetector, recognizers, "whisper", ApertiumTranslator(), EspeakSynthesizer())
