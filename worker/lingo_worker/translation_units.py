"""Translation units: committed words grouped into the pieces that are translated and spoken.

In simultaneous interpretation a unit closes at a sentence end, at a clause boundary (a comma,
semicolon or colon after a few words), at a pause between words, or when it has lasted
`max_seconds`; in consecutive interpretation only at the end of an utterance or at
`max_seconds`. A unit always closes between two words, never inside one. Punctuation counts only
once the recognizer has heard a word after it: Whisper ends every decode that stops mid-sentence
with a full stop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .streaming_transcriber import Word

SENTENCE_END = (".", "?", "!", "…", "。", "？", "！")
CLAUSE_END = (",", ";", ":", "，", "、")
PUNCTUATION = SENTENCE_END + CLAUSE_END
# Units that end a sentence (or the speech), where the recognizer's buffer may start afresh.
SENTENCE_REASONS = ("sentence", "end_of_speech", "flush")
MIN_CLAUSE_WORDS = 3  # "Well," alone is not worth a unit of its own
PAUSE_SECONDS = 0.3  # a gap between two words this long ends the unit before the second
# At the length cap a word this short ("di", "a", "el", "la", "un") goes to the next unit: such
# words lead on to what follows (prepositions, articles), and a word Whisper writes in pieces may
# start with one ("di ciotto" for "diciotto" in bench/results/simultaneous-sure-words).
LEADING_WORD_LETTERS = 2


@dataclass
class Unit:
    index: int
    words: list[Word]
    reason: str  # sentence, clause, pause, length, end_of_speech, flush

    @property
    def text(self) -> str:
        return " ".join(word.text for word in self.words)

    @property
    def start(self) -> float:
        return self.words[0].start

    @property
    def end(self) -> float:
        return self.words[-1].end


@dataclass
class UnitBuilder:
    simultaneous: bool
    max_seconds: float
    words: list[Word] = field(default_factory=list)  # of the unit in progress
    count: int = 0  # units closed so far

    def add(self, committed: list[Word], following: list[Word], paused: bool = False) -> list[Unit]:
        """Committed words in; the units they close. `following` are the words heard after them
        that are not committed yet (they confirm punctuation and show pauses); `paused`: the
        speaker is taking a breath after the last of them (that confirms punctuation too)."""
        closed: list[Unit] = []
        for word in committed:
            if reason := self._boundary_before(word):
                closed.append(self._close(reason))
            self.words.append(word)
            if self.words[-1].end - self.words[0].start >= self.max_seconds:
                held = self.words.pop() if len(self.words) > 1 and _leads_on(self.words[-1]) else None
                closed.append(self._close("length"))
                if held is not None:
                    self.words.append(held)
        if self.words and following and (reason := self._boundary_before(following[0])):
            closed.append(self._close(reason))
        elif self.words and paused and self.simultaneous and self.words[-1].text.endswith(PUNCTUATION):
            closed.append(self._close("sentence" if self.words[-1].text.endswith(SENTENCE_END) else "clause"))
        return closed

    def _boundary_before(self, word: Word) -> str | None:
        """Whether the unit in progress ends before `word`, now that `word` was heard after it."""
        if not self.words or not self.simultaneous:
            return None
        last = self.words[-1]
        if last.text.endswith(SENTENCE_END):
            return "sentence"
        if last.text.endswith(CLAUSE_END) and len(self.words) >= MIN_CLAUSE_WORDS:
            return "clause"
        if word.start - last.end >= PAUSE_SECONDS:
            return "pause"
        return None

    def close(self, reason: str) -> Unit | None:
        """Close the unit in progress now (end of speech, flush); None when it has no words."""
        return self._close(reason) if self.words else None

    def _close(self, reason: str) -> Unit:
        unit = Unit(self.count, self.words, reason)
        self.count += 1
        self.words = []
        return unit


def _leads_on(word: Word) -> bool:
    """A short word without punctuation after it: it belongs with the words that follow."""
    return len(word.key) <= LEADING_WORD_LETTERS and not word.text.endswith(PUNCTUATION)
