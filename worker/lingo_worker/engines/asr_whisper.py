"""Whisper through faster-whisper (CTranslate2).

CPU profile: multilingual Whisper base (default) or English-only tiny.en, both from PyPI
packages (worker/lingo_worker/engines/whisper_models.py). GPU profile: any CTranslate2 Whisper model in the
mounted model directory (e.g. large-v3), on CUDA.

Whisper pads every utterance to a 30-second window, and that padding is most of the encoder's
cost. Utterances are encoded instead in a window of their own length plus a short tail, but at
least `min_window_seconds` (shorter windows make the decoder loop), with the decoder's length
bounded by the utterance's duration; the language is always given, never detected (detection
alone doubles the cost). Long utterances take faster-whisper's ordinary path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lingo_api.languages import ALIASES

from .base import ASR_SAMPLE_RATE, EngineUnavailable, RecognizedWord, SpeechRecognizer
from .languages import base_language

# Whisper's code where it differs from the API's canonical one (Bokmål is Whisper's "no").
WHISPER_CODES = {canonical: whisper for whisper, canonical in ALIASES.items()}
SHORT_PATH_MAX_SECONDS = 20.0
TAIL_SECONDS = 0.2
# Text tokens the decoder may write per second of audio: the bench talks' speech runs at up to 6.1
# (Italian, Catalan; English 4.5), and a word cut off by the bound is a word lost.
TOKENS_PER_SECOND = 8
# CTranslate2 (4.8) ends Whisper's greedy decode after max_length / 2 text tokens (measured: a
# max_length of 20 gave 10 tokens, 56 gave 28), so the bound is passed doubled.
MAX_LENGTH_PER_TOKEN = 2
# faster-whisper's defaults: punctuation that joins the word before or after it
PREPEND_PUNCTUATION = "\"'“¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"
ELISION = "'’"


class WhisperRecognizer(SpeechRecognizer):
    thread_safe = True  # CTranslate2 serves num_workers concurrent calls
    word_timestamps = True

    def __init__(self, model_dir: Path, device: str = "cpu", compute_type: str = "int8", threads: int = 2,
                 name: str = "whisper", min_window_seconds: float = 10.0):
        if not (model_dir / "model.bin").is_file():
            raise EngineUnavailable(f"no CTranslate2 Whisper model at {model_dir} (expected model.bin)")
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        self.name = name
        self.min_window_seconds = min_window_seconds
        self._model = WhisperModel(
            str(model_dir), device=device, compute_type=compute_type, cpu_threads=threads, num_workers=2
        )
        self.languages = frozenset(_LANGUAGE_CODES) if self._model.model.is_multilingual else frozenset({"en"})

    @staticmethod
    def _code(language: str) -> str:
        base = base_language(language)
        return WHISPER_CODES.get(base, base)

    def supports(self, language: str) -> bool:
        return self._code(language) in self.languages

    def transcribe(self, audio: np.ndarray, language: str) -> str:
        code = self._code(language)
        if len(audio) / ASR_SAMPLE_RATE <= SHORT_PATH_MAX_SECONDS:
            return self._transcribe_short(audio, code)
        segments, _ = self._model.transcribe(
            audio, language=code, beam_size=1, vad_filter=False, condition_on_previous_text=False,
            without_timestamps=True,
        )
        return " ".join(segment.text.strip() for segment in segments).strip()

    def _transcribe_short(self, audio: np.ndarray, code: str) -> str:
        tokenizer, encoded, tokens = self._decode_short(audio, code)
        return tokenizer.decode(tokens).strip()

    def transcribe_words(self, audio: np.ndarray, language: str) -> list[RecognizedWord]:
        """Words timed by the decoder's cross-attention (faster-whisper's word alignment), decoded in
        the short window; audio up to SHORT_PATH_MAX_SECONDS. No previous text is given: with the
        committed text as a prompt Whisper tended to repeat phrases of it, and forcing committed
        words as a prefix derailed Catalan (measured in the simultaneous benchmark's tuning)."""
        from faster_whisper.transcribe import merge_punctuations

        skipped = max(0, len(audio) - int(SHORT_PATH_MAX_SECONDS * ASR_SAMPLE_RATE))  # only the last 20 s
        audio = audio[skipped:]
        tokenizer, encoded, tokens = self._decode_short(audio, self._code(language))
        if not tokens:
            return []
        alignment = self._model.find_alignment(tokenizer, [tokens], encoded, len(audio) // self._hop)[0]
        merge_punctuations(alignment, PREPEND_PUNCTUATION, APPEND_PUNCTUATION)
        offset = skipped / ASR_SAMPLE_RATE
        words: list[RecognizedWord] = []
        for aligned in alignment:
            text = aligned["word"].strip()
            if not text:
                continue
            if words and text[0] in ELISION and words[-1].text[-1:].isalpha():
                # An elision is one word ("d'aquesta", "l'autobus", "don't"): Whisper aligns its
                # apostrophe with what follows.
                words[-1] = RecognizedWord(words[-1].text + text, words[-1].start, round(offset + float(aligned["end"]), 3),
                                           min(words[-1].probability, float(aligned["probability"])))
                continue
            words.append(RecognizedWord(text, round(offset + float(aligned["start"]), 3),
                                        round(offset + float(aligned["end"]), 3), float(aligned["probability"])))
        return words

    @property
    def _hop(self) -> int:
        return self._model.feature_extractor.hop_length

    def _decode_short(self, audio: np.ndarray, code: str):
        """(tokenizer, encoder output, text tokens) of audio decoded in a window of its own length."""
        from faster_whisper.tokenizer import Tokenizer

        model = self._model
        window = max(len(audio) + int(TAIL_SECONDS * ASR_SAMPLE_RATE), int(self.min_window_seconds * ASR_SAMPLE_RATE))
        padded = np.zeros(window, dtype=np.float32)
        padded[: len(audio)] = audio
        features = model.feature_extractor(padded, padding=0)
        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe",
                              language=code if model.model.is_multilingual else None)
        prompt = model.get_prompt(tokenizer, [], without_timestamps=True)
        max_length = min(448, MAX_LENGTH_PER_TOKEN * (int(len(audio) / ASR_SAMPLE_RATE * TOKENS_PER_SECOND) + 10))
        encoded = model.encode(features)
        result = model.model.generate(encoded, [prompt], beam_size=1, max_length=max_length,
                                      suppress_blank=True, suppress_tokens=[-1], return_scores=False)
        return tokenizer, encoded, [token for token in result[0].sequences_ids[0] if token < tokenizer.eot]
