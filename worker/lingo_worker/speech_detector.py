"""Where speech is in a 16 kHz stream: a voice activity detector with hysteresis, a little audio
kept from before each onset, and an end of speech after an adaptive silence.

It cuts nothing by length: how long a stretch of speech may grow before it is translated is the
recognizer's and the translation units' business (worker/lingo_worker/speaker_stream.py), which
cut between words."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engines.base import ASR_SAMPLE_RATE, VoiceActivityDetector

PREROLL_SECONDS = 0.3  # kept before the first voiced window so word onsets are not clipped
HYSTERESIS = 0.15  # a window counts as silence only below threshold - HYSTERESIS
KEPT_SILENCE_SECONDS = 0.1  # of the silence that ended an utterance (more if passed on before the end was known)
PAUSE_MS = 90  # silence inside an utterance that counts as a breath between phrases (3 VAD windows)

# The silence that ends an utterance shrinks as the utterance grows: a pause after several
# seconds of speech is most likely the end of it, one after a word or two may be a breath.
SHRINK_MS_PER_SECOND = 50
SHORTEST_FRACTION = 0.5


def end_of_speech_ms(min_silence_ms: int, speech_seconds: float) -> float:
    """Milliseconds of silence that close an utterance of `speech_seconds` (adaptive window)."""
    return max(min_silence_ms * SHORTEST_FRACTION, min_silence_ms - SHRINK_MS_PER_SECOND * speech_seconds)


@dataclass
class SpeechPiece:
    """Audio of one utterance, in stream order: `start` is the stream time (seconds of this speaker's
    audio) of its first sample; `voiced` how many seconds of it are speech; `paused` marks a piece
    that ends in a pause of at least PAUSE_MS (a breath: the utterance goes on), `ended` the
    utterance's last piece."""

    audio: np.ndarray  # float32, 16 kHz
    start: float
    voiced: float = 0.0
    paused: bool = False
    ended: bool = False


class SpeechDetector:
    def __init__(self, vad: VoiceActivityDetector):
        self._vad = vad
        self._window = vad.window_samples
        self._pending = np.zeros(0, dtype=np.float32)
        self._processed = 0  # samples of the stream the detector has judged
        self._preroll: list[np.ndarray] = []
        self._in_speech = False
        self._speech_samples = 0  # of the current utterance
        self._silence_samples = 0  # trailing silence of the current utterance
        # PAUSE_MS in whole windows: the silence run is reported as a pause when it reaches this
        self._pause_samples = -(-PAUSE_MS * ASR_SAMPLE_RATE // 1000 // self._window) * self._window

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    def push(self, samples: np.ndarray, vad_threshold: float, min_silence_ms: int) -> list[SpeechPiece]:
        """Feed audio; returns the speech in it (with the pre-roll of an onset), and where an
        utterance ended."""
        self._pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        pieces: list[SpeechPiece] = []
        audio: list[np.ndarray] = []
        start, voiced_samples = 0.0, 0

        def close_piece(paused: bool = False, ended: bool = False) -> None:
            nonlocal voiced_samples
            if audio or ended or paused:
                joined = np.concatenate(audio) if audio else np.zeros(0, dtype=np.float32)
                pieces.append(SpeechPiece(joined, start, voiced_samples / ASR_SAMPLE_RATE, paused, ended))
            audio.clear()
            voiced_samples = 0

        while len(self._pending) >= self._window:
            window, self._pending = self._pending[: self._window], self._pending[self._window:]
            window_start = self._processed / ASR_SAMPLE_RATE
            self._processed += self._window
            probability = self._vad.speech_probability(window)
            if not self._in_speech:
                if probability >= vad_threshold:
                    self._in_speech, self._speech_samples, self._silence_samples = True, 0, 0
                    audio.extend(self._preroll)
                    start = window_start - sum(len(w) for w in self._preroll) / ASR_SAMPLE_RATE
                    audio.append(window)
                    voiced_samples += self._window
                    self._preroll = []
                else:
                    self._preroll.append(window)
                    while len(self._preroll) * self._window > PREROLL_SECONDS * ASR_SAMPLE_RATE:
                        self._preroll.pop(0)
                continue
            if not audio:
                start = window_start
            audio.append(window)
            self._speech_samples += self._window
            if probability < vad_threshold - HYSTERESIS:
                self._silence_samples += self._window
            else:
                self._silence_samples = 0
                voiced_samples += self._window
            needed = end_of_speech_ms(min_silence_ms, self._speech_samples / ASR_SAMPLE_RATE)
            if self._silence_samples * 1000 >= needed * ASR_SAMPLE_RATE:
                # The utterance's audio ends a little after its last voiced window.
                drop = max(0, self._silence_samples - int(KEPT_SILENCE_SECONDS * ASR_SAMPLE_RATE))
                kept = np.concatenate(audio)[: max(0, sum(len(w) for w in audio) - drop)]
                audio[:] = [kept] if len(kept) else []
                close_piece(ended=True)
                self._in_speech = False
                self._vad.reset()
            elif self._silence_samples == self._pause_samples:
                close_piece(paused=True)
        close_piece()
        return pieces

    def end(self) -> SpeechPiece | None:
        """The stream ended: the utterance in progress (if any) ends here."""
        if not self._in_speech:
            return None
        self._in_speech = False
        self._vad.reset()
        return SpeechPiece(np.zeros(0, dtype=np.float32), self._processed / ASR_SAMPLE_RATE, ended=True)
