"""What Whisper says that was not said: loops and hallucinated phrases.

- Loops: fed a cut-off or padded stretch of audio, Whisper can repeat itself ("... crowded stops,
  wide, wide, wide, wide, wide"). A hypothesis is cut where a phrase of one to four words starts
  repeating a third time in a row (the phrase is kept once), and dropped whole when its text still
  compresses like a loop (zlib ratio, the measure Whisper's own fallback uses).
- Hallucinations: on a breath or a stretch of near silence it can invent a phrase ("i el que ens
  hem de fer és que"). Its words then have a low probability, measured on the Catalan talk
  (bench/talks/ca.txt): inserted words p50 0.10, 81% below 0.3; words that were said p50 0.92, 4%
  below 0.3. Two or more words in a row below LOW_PROBABILITY are dropped, and so is a lone word
  below VERY_LOW_PROBABILITY or trailing off in an ellipsis ("I...") below LOW_PROBABILITY.
"""

from __future__ import annotations

import re
import zlib
from typing import Iterator, Sequence, TypeVar

MAX_PHRASE_WORDS = 4
ALLOWED_REPEATS = 2  # "very, very" is speech; a third time in a row is a loop
MAX_COMPRESSION_RATIO = 2.4
MIN_TEXT_FOR_RATIO = 48  # characters; short texts compress badly whatever they say
LOW_PROBABILITY = 0.3
VERY_LOW_PROBABILITY = 0.1

_NOT_A_WORD_CHARACTER = re.compile(r"[^\w]+")

Word = TypeVar("Word")


def word_key(text: str) -> str:
    """A word as compared across hypotheses: lower case, no punctuation."""
    return _NOT_A_WORD_CHARACTER.sub("", text.lower())


def compression_ratio(text: str) -> float:
    raw = text.encode()
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def repeated_phrases(keys: Sequence[str]) -> Iterator[tuple[int, int, int]]:
    """(start, words in the phrase, times said) of each phrase of one to MAX_PHRASE_WORDS words
    said more than ALLOWED_REPEATS times in a row, from the left; a loop is counted once."""
    index = 0
    while index < len(keys):
        for n in range(1, MAX_PHRASE_WORDS + 1):
            phrase = keys[index:index + n]
            if len(phrase) < n or not all(phrase):
                continue
            repeats = 1
            while keys[index + repeats * n:index + (repeats + 1) * n] == phrase:
                repeats += 1
            if repeats > ALLOWED_REPEATS:
                yield index, n, repeats
                index += n * repeats - 1  # past the loop
                break
        index += 1


def repeated_phrase_end(keys: Sequence[str]) -> int | None:
    """Where the first occurrence of a phrase that then repeats in a loop ends (what follows it is
    not to be trusted), or None."""
    return next((start + n for start, n, _ in repeated_phrases(keys)), None)


def cut_loops(words: Sequence[Word], text_of=lambda word: word.text) -> tuple[list[Word], bool]:
    """(the words of one decode up to where a loop starts, whether one was found)."""
    cut = repeated_phrase_end([word_key(text_of(word)) for word in words])
    if cut is not None:
        return list(words[:cut]), True
    kept = list(words)
    text = " ".join(text_of(word) for word in kept)
    if len(text) >= MIN_TEXT_FOR_RATIO and compression_ratio(text) > MAX_COMPRESSION_RATIO:
        return [], True
    return kept, False


def drop_hallucinations(words: Sequence[Word]) -> tuple[list[Word], int]:
    """(the words without invented ones, how many were dropped); words have .text, .probability."""
    low = [word.probability < LOW_PROBABILITY for word in words]
    kept = []
    for index, word in enumerate(words):
        in_low_run = low[index] and ((index > 0 and low[index - 1]) or (index + 1 < len(words) and low[index + 1]))
        trailing_off = low[index] and word.text.endswith(("...", "…"))
        if in_low_run or trailing_off or word.probability < VERY_LOW_PROBABILITY:
            continue
        kept.append(word)
    return kept, len(words) - len(kept)
