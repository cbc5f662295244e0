"""Festival (Debian festival + festvox-*): a more natural voice where Debian has one (Catalan
festvox-ca-ona-hts, English festvox-us-slt-hts, Italian festvox-italp16k), espeak-ng for every
other language.

Festival runs once per worker (`festival --pipe`, ~0.3 s to start) and synthesizes each
sentence in about 70 ms; a process that dies or stalls is started again. It reads ISO-8859-1.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import tempfile
import threading
import time
import wave
from pathlib import Path

import numpy as np

from .base import EngineUnavailable, SpeechSynthesizer, Synthesized
from .engine_process import end_engine_process
from .languages import base_language

VOICES_DIR = Path("/usr/share/festival/voices")
# Festival voice directory -> the language it speaks. Only voices that Whisper base recognizes
# better than espeak-ng's are used (probe sentence word error rate, bench/languages.py: English
# 0.44 -> 0.0, Italian 0.33 -> 0.0); Debian's Russian voice fails on UTF-8 text.
FESTIVAL_VOICES = {"upc_ca_ona_hts": "ca", "cmu_us_slt_arctic_hts": "en", "lp_diphone": "it"}
DONE = "LINGO-DONE"
TIMEOUT_SECONDS = 10


class FestivalSynthesizer(SpeechSynthesizer):
    name = "festival"

    def __init__(self, voices_dir: Path = VOICES_DIR):
        self._binary = shutil.which("festival")
        if not self._binary:
            raise EngineUnavailable("festival is not installed (Debian package 'festival')")
        self.voices = {language: voice for voice, language in FESTIVAL_VOICES.items()
                       if any((family / voice).is_dir() for family in voices_dir.glob("*"))}
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._scratch: Path | None = None  # made with the first sentence, removed by close()

    def supports(self, language: str) -> bool:
        return base_language(language) in self.voices

    def _start(self) -> subprocess.Popen:
        # Like the Apertium pipelines: in the worker's process group, ending with the worker.
        self._process = subprocess.Popen([self._binary, "--pipe"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL)
        return self._process

    def _until_done(self, process: subprocess.Popen) -> None:
        out, deadline, fd = b"", time.monotonic() + TIMEOUT_SECONDS, process.stdout.fileno()
        while DONE.encode() not in out:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError("festival did not answer")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise BrokenPipeError("festival exited")
            out += chunk

    def synthesize(self, text: str, language: str, voice: str | None = None, rate: int | None = None,
                   tempo: float = 1.0) -> Synthesized:
        festival_voice = self.voices[base_language(language)]
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="lingo-festival-"))
        path = self._scratch / "utterance.wav"
        quoted = text.replace("\\", " ").replace('"', "'")
        command = (f'(voice_{festival_voice})\n{_tempo_setting(festival_voice, tempo)}\n'
                   f'(utt.save.wave (utt.synth (Utterance Text "{quoted}")) "{path}" '
                   f"(quote riff))\n(format t \"{DONE}\\n\")\n(fflush nil)\n").encode("latin-1", errors="replace")
        with self._lock:
            for attempt in (1, 2):
                if self._process is None or self._process.poll() is not None:
                    self._stop_process()
                    self._start()
                try:
                    self._process.stdin.write(command)
                    self._process.stdin.flush()
                    self._until_done(self._process)
                    break
                except (OSError, TimeoutError) as exc:
                    self._stop_process()
                    if attempt == 2:
                        raise RuntimeError(f"festival failed: {exc}") from exc
            with wave.open(str(path)) as wav:
                samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).copy()
                return Synthesized(samples=samples, sample_rate=wav.getframerate())

    def warm_up(self, languages: list[str]) -> None:
        """Start Festival now if a language will use it, rather than at the first sentence."""
        if any(self.supports(language) for language in languages):
            self.synthesize("Hola.", next(lang for lang in languages if self.supports(lang)))

    def close(self) -> None:
        self._stop_process()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def _stop_process(self) -> None:
        process, self._process = self._process, None
        end_engine_process(process)


def _tempo_setting(voice: str, tempo: float) -> str:
    """Festival's pace for the next utterance: HTS voices take the engine's speech rate (`-r`),
    the others stretch their durations. Set before every utterance, since it outlives one."""
    if voice.endswith("_hts"):
        return f'(set! hts_engine_params (append {voice}::hts_engine_params (list (list "-r" {tempo:.3f}))))'
    return f"(Parameter.set 'Duration_Stretch {1 / tempo:.3f})"


class BestVoice(SpeechSynthesizer):
    """Festival where it has a natural voice for the language, espeak-ng otherwise (and always
    when the task names an espeak-ng voice of its own in `voices`)."""

    def __init__(self, natural: FestivalSynthesizer | None, fallback: SpeechSynthesizer):
        self.natural, self.fallback = natural, fallback
        self.name = f"{natural.name}+{fallback.name}" if natural else fallback.name

    def _engine(self, language: str, voice: str | None) -> SpeechSynthesizer:
        if self.natural and voice is None and self.natural.supports(language):
            return self.natural
        return self.fallback

    def supports(self, language: str) -> bool:
        return (self.natural is not None and self.natural.supports(language)) or self.fallback.supports(language)

    def synthesize(self, text: str, language: str, voice: str | None = None, rate: int | None = None,
                   tempo: float = 1.0) -> Synthesized:
        return self._engine(language, voice).synthesize(text, language, voice, rate, tempo)

    def warm_up(self, languages: list[str]) -> None:
        if self.natural:
            self.natural.warm_up(languages)

    def close(self) -> None:
        if self.natural:
            self.natural.close()
