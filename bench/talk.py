"""A talk for the simultaneous-interpretation benchmark: the project's own script
(bench/talks/<language>.txt, one sentence a line) spoken by Festival's voice for the language, with
a short breath between sentences, and the true time of every word.

Festival tells where each word ends (its Word relation), so the benchmark knows when each word was
said without asking the system it measures. The audio is 16 kHz mono float32.
"""

from __future__ import annotations

import hashlib
import random
import re
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lingo_worker.audio_output import resample
from lingo_worker.engines.tts_festival import FESTIVAL_VOICES

TALKS_DIR = Path(__file__).resolve().parent / "talks"
RATE = 16_000
BREATH_SECONDS = (0.10, 0.25)  # between sentences, drawn uniformly (seeded)
CACHE_DIR = Path.home() / ".cache" / "lingo-operator" / "talks"
WORD_MARK = "LINGO-WORD"


@dataclass(frozen=True)
class SpokenWord:
    text: str  # as Festival tokenized it
    start: float  # seconds from the start of the talk
    end: float
    sentence: int


@dataclass
class Talk:
    language: str
    sentences: list[str]
    audio: np.ndarray  # float32, 16 kHz
    words: list[SpokenWord]
    sentence_spans: list[tuple[float, float]]

    @property
    def seconds(self) -> float:
        return len(self.audio) / RATE


def script(language: str, sentences: int | None = None) -> list[str]:
    lines = [line.strip() for line in (TALKS_DIR / f"{language}.txt").read_text().splitlines() if line.strip()]
    return lines[:sentences] if sentences else lines


def _voice(language: str) -> str:
    voice = next((voice for voice, spoken in FESTIVAL_VOICES.items() if spoken == language), None)
    if voice is None:
        raise SystemExit(f"no Festival voice for {language!r}: talks are spoken by Festival (bench/talk.py)")
    return voice


def _festival_words(sentences: list[str], language: str, folder: Path) -> list[list[tuple[str, float, float]]]:
    """Synthesize each sentence into folder/<i>.wav; (word, start, end) per sentence."""
    lines = [f"(voice_{_voice(language)})"]
    for index, sentence in enumerate(sentences):
        quoted = sentence.replace("\\", " ").replace('"', "'")
        lines += [
            f'(set! utt (utt.synth (Utterance Text "{quoted}")))',
            f'(utt.save.wave utt "{folder}/{index}.wav" (quote riff))',
            f'(format t "{WORD_MARK} {index} -\\n")',
            "(mapcar (lambda (w) (format t \"%s %f %f\\n\" (item.name w) "
            "(item.feat w \"R:SylStructure.daughter1.daughter1.R:Segment.p.end\") (item.feat w \"word_end\"))) "
            "(utt.relation.items utt 'Word))",
        ]
    program = folder / "talk.scm"
    program.write_bytes("\n".join(lines).encode("latin-1", errors="replace"))
    out = subprocess.run(["festival", "-b", str(program)], capture_output=True, check=True).stdout.decode("latin-1")
    timings: list[list[tuple[str, float, float]]] = [[] for _ in sentences]
    current = -1
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == WORD_MARK:
            current = int(parts[1])
        elif len(parts) == 3 and current >= 0:
            timings[current].append((parts[0], float(parts[1]), float(parts[2])))
    return timings


def _read(path: Path) -> np.ndarray:
    with wave.open(str(path)) as wav:
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
        return resample(samples, wav.getframerate(), RATE)


def speak(language: str, sentences: list[str], seed: int = 1) -> Talk:
    """The talk's audio and word times (cached by content under ~/.cache/lingo-operator/talks)."""
    key = hashlib.sha256(repr((language, sentences, seed, BREATH_SECONDS)).encode()).hexdigest()[:16]
    cached = CACHE_DIR / f"{language}-{key}.npz"
    if cached.exists():
        data = np.load(cached, allow_pickle=True)
        return Talk(language, sentences, data["audio"],
                    [SpokenWord(text, float(start), float(end), int(sentence))
                     for text, start, end, sentence in data["words"].tolist()],
                    [(float(start), float(end)) for start, end in data["spans"].tolist()])
    breaths = random.Random(seed)
    pieces: list[np.ndarray] = []
    words: list[SpokenWord] = []
    spans: list[tuple[float, float]] = []
    at = 0.0
    with tempfile.TemporaryDirectory(prefix="lingo-talk-") as folder:
        timings = _festival_words(sentences, language, Path(folder))
        for index, sentence_words in enumerate(timings):
            audio = _read(Path(folder) / f"{index}.wav")
            voiced = np.flatnonzero(np.abs(audio) > 0.015)  # cut Festival's silence around the sentence
            first, last = (voiced[0], voiced[-1] + 1) if len(voiced) else (0, len(audio))
            lead = first / RATE
            if index:
                gap = breaths.uniform(*BREATH_SECONDS)
                pieces.append(np.zeros(int(gap * RATE), dtype=np.float32))
                at += int(gap * RATE) / RATE
            pieces.append(audio[first:last])
            for text, start, end in sentence_words:
                words.append(SpokenWord(text, round(float(at + max(0.0, start - lead)), 3),
                                        round(float(at + min(end - lead, (last - first) / RATE)), 3), index))
            spans.append((float(at), float(at + (last - first) / RATE)))
            at += (last - first) / RATE
    talk = Talk(language, sentences, np.concatenate(pieces).astype(np.float32), words, spans)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(cached, audio=talk.audio, words=np.array([tuple(w.__dict__.values()) for w in words], dtype=object),
             spans=np.array(spans))
    return talk


def normalized_words(text: str) -> list[str]:
    """Words for scoring: lower case, no punctuation, digits kept."""
    return [word for word in re.sub(r"[^\w\s']", " ", text.lower()).replace("'", " ").split() if word]
