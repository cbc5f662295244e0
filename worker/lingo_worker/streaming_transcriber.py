"""Streaming recognition: words are committed while the speaker is still talking.

The LocalAgreement-2 policy (Macháček et al., whisper_streaming): the utterance's audio buffer is
decoded again and again as it grows, and a word is committed once two consecutive decodes agree
on it and on every word before it. Words carry their times (Whisper's word alignment), so what a
decode says about audio that is already committed is recognised and skipped, and the buffer is
trimmed behind committed words: it holds what is not yet committed plus the sentence in progress,
a few seconds, however long the speaker goes on.

This module is the policy alone: the decoding runs elsewhere (worker/lingo_worker/speaker_stream.py)
and hands its words in with the stream time its audio started at.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import numpy as np

from .engines.base import ASR_SAMPLE_RATE, RecognizedWord
from .loop_guard import cut_loops, drop_hallucinations, word_key

CONTEXT_WORDS = 40  # committed words kept to recognise them when a decode hears them again
# Committed words ending this little into a decode's audio are not heard again in it.
OVERLAP_SECONDS = 0.1
MAX_DUPLICATE_WORDS = 5  # committed words a new decode may repeat at its start
# A decoded word is a committed one heard again only if it starts this close to where the committed
# one started: otherwise it is the same word said again ("arribava tard o que no arribava mai").
SAME_WORD_SECONDS = 0.3
# A word both decodes heard with at least this probability (Whisper's, from its tokens) is sure:
# it needs less audio after it to be committed (speaker_stream.SURE_RIGHT_CONTEXT_SECONDS).
SURE_PROBABILITY = 0.75


@dataclass(frozen=True)
class Word:
    text: str
    start: float  # seconds into the speaker's stream
    end: float
    probability: float = 1.0

    @property
    def key(self) -> str:
        return word_key(self.text)


@dataclass
class Snapshot:
    """What a decode runs on: the buffer's audio and the stream time it starts at."""

    audio: np.ndarray
    start: float

    @property
    def seconds(self) -> float:
        return len(self.audio) / ASR_SAMPLE_RATE

    @property
    def end(self) -> float:
        return self.start + self.seconds


class StreamingTranscriber:
    def __init__(self):
        self.audio = np.zeros(0, dtype=np.float32)
        self.start = 0.0  # stream time of audio[0]
        self.committed: list[Word] = []  # the last CONTEXT_WORDS committed words
        self.tentative: list[Word] = []  # the last decode's words past the committed ones
        self.loops = 0  # decodes cut by the loop guard
        self.hallucinations = 0  # words dropped as invented

    @property
    def end(self) -> float:
        return self.start + len(self.audio) / ASR_SAMPLE_RATE

    @property
    def seconds(self) -> float:
        return len(self.audio) / ASR_SAMPLE_RATE

    @property
    def committed_end(self) -> float:
        return self.committed[-1].end if self.committed else 0.0

    def append(self, audio: np.ndarray, start: float) -> None:
        """Audio of the utterance in progress; `start` is the stream time of its first sample."""
        if not len(self.audio):
            self.start = start
        self.audio = np.concatenate([self.audio, audio])

    def snapshot(self) -> Snapshot:
        return Snapshot(self.audio.copy(), self.start)

    def _heard_again(self, start: float) -> list[Word]:
        """Committed words inside audio that starts at `start`."""
        return [word for word in self.committed if word.end > start + OVERLAP_SECONDS]

    def agree(self, words: list[RecognizedWord], snapshot: Snapshot, right_context: float = 0.0,
              sure_right_context: float | None = None) -> list[Word]:
        """A new decode of `snapshot`: commits the words it shares with the previous decode and
        that have `right_context` seconds of audio after them in it, or `sure_right_context`
        seconds if both decodes were sure of the word (SURE_PROBABILITY)."""
        fresh = self._fresh(words, snapshot)
        agreed = 0
        for previous, current in zip(self.tentative, fresh):
            sure = sure_right_context is not None and min(previous.probability, current.probability) >= SURE_PROBABILITY
            if previous.key != current.key or current.end > snapshot.end - (sure_right_context if sure else right_context):
                break
            agreed += 1
        self.tentative = fresh[agreed:]
        return self._commit(fresh[:agreed])

    def commit_tentative(self) -> list[Word]:
        """Commit the last decode's words that were not agreed on yet."""
        words, self.tentative = self.tentative, []
        return self._commit(words)

    def hear(self, words: list[RecognizedWord], snapshot: Snapshot) -> list[Word]:
        """A decode for partial results only: commits nothing."""
        self.tentative = self._fresh(words, snapshot)
        return []

    def commit_all(self, words: list[RecognizedWord], snapshot: Snapshot, before: float | None = None) -> list[Word]:
        """Commit the decode's words (those ending before `before`, if given) without waiting
        for agreement: at the end of an utterance, or when a consecutive segment hits its cap."""
        fresh = self._fresh(words, snapshot)
        count = len(fresh) if before is None else sum(1 for word in fresh if word.end <= before)
        self.tentative = fresh[count:]
        return self._commit(fresh[:count])

    def trim(self, at: float) -> None:
        """Forget the audio before stream time `at` (the end of committed words)."""
        cut = int(round((min(at, self.end) - self.start) * ASR_SAMPLE_RATE))
        if cut > 0:
            self.audio = self.audio[cut:]
            self.start += cut / ASR_SAMPLE_RATE

    def clear(self) -> None:
        """The utterance ended and everything in it is committed."""
        self.audio = np.zeros(0, dtype=np.float32)
        self.tentative = []

    def _fresh(self, words: list[RecognizedWord], snapshot: Snapshot) -> list[Word]:
        """The decode's words in stream time, cut at a loop, without those already committed."""
        timed = [Word(w.text, snapshot.start + w.start, snapshot.start + w.end, w.probability) for w in words]
        timed, looped = cut_loops(timed)
        self.loops += looped
        timed, invented = drop_hallucinations(timed)
        self.hallucinations += invented
        # Committed words inside the decoded audio are heard again: found by their text (word
        # times are approximate, and a long committed word may seem to overlap the next one).
        heard_again = self._heard_again(snapshot.start)
        if heard_again:
            head = timed[:len(heard_again) + MAX_DUPLICATE_WORDS]  # where they can be: at the start
            matcher = difflib.SequenceMatcher(a=[w.key for w in heard_again], b=[w.key for w in head], autojunk=False)
            blocks = [block for block in matcher.get_matching_blocks() if block.size]
            if blocks and blocks[-1].a + blocks[-1].size == len(heard_again):
                end = blocks[-1].b + blocks[-1].size
                if _same_word(timed[end - 1], heard_again[-1]):
                    return timed[end:]
        boundary = self.committed_end
        fresh = [word for word in timed if (word.start + word.end) / 2 > boundary]
        # A committed word heard again right at the boundary is dropped by its text (the longest
        # run of committed words the decode starts with).
        if fresh and self.committed:
            for n in range(min(MAX_DUPLICATE_WORDS, len(self.committed), len(fresh)), 0, -1):
                if [w.key for w in self.committed[-n:]] == [w.key for w in fresh[:n]] \
                        and _same_word(fresh[n - 1], self.committed[-1]):
                    fresh = fresh[n:]
                    break
        return fresh

    def _commit(self, words: list[Word]) -> list[Word]:
        self.committed = (self.committed + words)[-CONTEXT_WORDS:]
        return words


def _same_word(decoded: Word, committed: Word) -> bool:
    return abs(decoded.start - committed.start) <= SAME_WORD_SECONDS
