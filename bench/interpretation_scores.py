"""Scores of one interpreted talk: lag, quality and what went wrong.

Inputs: the talk (its script and the true time of every spoken word, bench/talk.py) and what a
listener received, unit by unit: the words recognized, their translation, and when the
translation's audio was heard (start and length on a real-time player).

- Ear-voice span, per source word: from the word spoken to its translation heard. A word is
  found in the recognized units by aligning the units' words to the script (difflib); its
  translation is placed in the unit's audio at the word's relative position in the unit (no word
  alignment exists between a source unit and its Apertium translation).
- SimulEval's latency (simuleval/evaluator/scorers/latency_scorer.py, the speech-output variants
  that time a target word when it is heard): D_i is when target word i is heard, the words spread
  evenly over their unit's audio. StartOffset = D_1 and EndOffset = D_last - |X| over the talk;
  AL = 1/tau * sum_{i<=tau} (D_i - (i-1) |X| / |Y|), tau the first i where D_i >= |X|, and LAAL
  with |Y| replaced by max(|Y|, |Y*|) (|Y*| the reference translation's length), computed per
  script sentence and averaged, as long-form evaluation does (StreamLAAL): a unit's translated
  words are given to the sentences its recognized words belong to. Over a whole talk AL would
  assume the target words spread evenly over ten minutes, which they do not.
- Word error rate of the recognized words against the script (jiwer), chrF and BLEU (sacrebleu)
  of the talk's translation against the sentence-by-sentence translation of the script.
- Cut words: unit boundaries that split one script word in two (each half not a script word,
  together one). Loops: a phrase repeated three times in a row in the output (the worker's loop
  guard's own rule, worker/lingo_worker/loop_guard.py).
"""

from __future__ import annotations

import difflib
import statistics
from dataclasses import dataclass

from lingo_worker.loop_guard import repeated_phrases

from .talk import Talk, normalized_words


@dataclass
class HeardUnit:
    transcription_id: str
    source_text: str
    translated_text: str
    heard_start: float | None  # talk seconds; None when its audio never played (dropped)
    heard_seconds: float


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else float("nan")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))], 3)


def _aligned(talk: Talk, units: list[HeardUnit]) -> list[tuple[int, int, int, int]]:
    """(script word, unit, position in the unit, words in the unit) for each script word found in
    the recognized units (difflib over normalized words; a replaced run maps proportionally)."""
    recognized: list[tuple[int, int, int]] = []
    keys: list[str] = []
    for unit_index, unit in enumerate(units):
        words = normalized_words(unit.source_text)
        for position, word in enumerate(words):
            recognized.append((unit_index, position, len(words)))
            keys.append(word)
    # Festival keeps some elisions as one token ("l'autobus"): each normalized word of a token
    # stands for the token.
    script = [(key, index) for index, word in enumerate(talk.words) for key in normalized_words(word.text)]
    matcher = difflib.SequenceMatcher(a=[key for key, _ in script], b=keys, autojunk=False)
    aligned = []
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag not in ("equal", "replace") or b1 == b0:
            continue
        for offset in range(a1 - a0):
            aligned.append((script[a0 + offset][1],
                            *recognized[b0 + min(b1 - b0 - 1, offset * (b1 - b0) // (a1 - a0))]))
    return aligned


def ear_voice_spans(talk: Talk, units: list[HeardUnit]) -> list[tuple[float, float]]:
    """(source word's time in the talk, its ear-voice span in seconds) for every script word whose
    translation was heard."""
    spans: list[tuple[float, float]] = []
    for word_index, unit_index, position, count in _aligned(talk, units):
        unit, spoken = units[unit_index], talk.words[word_index]
        if unit.heard_start is not None:
            heard = unit.heard_start + unit.heard_seconds * position / max(count, 1)
            spans.append((spoken.start, heard - spoken.start))
    return spans


def _heard_words(unit: HeardUnit) -> list[float]:
    """When each word of a unit's translation is heard (ms of the talk), spread over its audio."""
    words = normalized_words(unit.translated_text)
    if unit.heard_start is None or not words:
        return []
    return [(unit.heard_start + unit.heard_seconds * k / len(words)) * 1000 for k in range(len(words))]


def _average_lagging(delays: list[float], source_ms: float, target_length: int) -> float:
    tau = next((i for i, d in enumerate(delays) if d >= source_ms), len(delays) - 1) + 1
    return sum(delays[i] - i * source_ms / target_length for i in range(tau)) / tau


def simuleval_latency(talk: Talk, units: list[HeardUnit], reference: list[str]) -> dict:
    """Talk-level StartOffset/EndOffset, and AL/LAAL per script sentence (averaged): each unit's
    translated words go to the sentences its recognized words come from, in proportion."""
    delays = [delay for unit in units for delay in _heard_words(unit)]
    if not delays:
        return {}
    per_sentence: list[list[float]] = [[] for _ in talk.sentences]
    shares: dict[int, list[int]] = {}
    for word_index, unit_index, _, _ in _aligned(talk, units):
        shares.setdefault(unit_index, []).append(talk.words[word_index].sentence)
    for unit_index, sentences in shares.items():
        heard = _heard_words(units[unit_index])
        ordered = sorted(sentences)
        for k, delay in enumerate(heard):
            per_sentence[ordered[min(len(ordered) - 1, k * len(ordered) // len(heard))]].append(delay)
    lagging, length_adaptive = [], []
    for index, heard in enumerate(per_sentence):
        if not heard:
            continue
        start, end = talk.sentence_spans[index]
        relative = [delay - start * 1000 for delay in sorted(heard)]
        source_ms = (end - start) * 1000
        lagging.append(_average_lagging(relative, source_ms, len(relative)))
        length_adaptive.append(_average_lagging(relative, source_ms,
                                                max(len(relative), len(normalized_words(reference[index])))))
    return {"start_offset_ms": round(delays[0]), "end_offset_ms": round(delays[-1] - talk.seconds * 1000),
            "al_ms": round(statistics.mean(lagging)), "laal_ms": round(statistics.mean(length_adaptive)),
            "sentences": len(lagging)}


def cut_words(talk: Talk, units: list[HeardUnit], sentence_mode_transcript: str = "") -> tuple[int, int]:
    """(words cut between two units, words the recognizer splits itself). A cut is a unit's last
    word and the next unit's first that make one word of the script where neither half is one. If
    the recognizer writes the same two words when it hears the whole sentence alone (sentence
    mode: tiny.en writes "suitcases" as "suit cases"), the split is its spelling, not a cut."""
    vocabulary = {key for word in talk.words for key in normalized_words(word.text)}
    split_alone = f" {' '.join(normalized_words(sentence_mode_transcript))} "
    cuts = splits = 0
    for before, after in zip(units, units[1:]):
        tail, head = normalized_words(before.source_text)[-1:], normalized_words(after.source_text)[:1]
        if tail and head and tail[0] + head[0] in vocabulary and not {tail[0], head[0]} <= vocabulary:
            if f" {tail[0]} {head[0]} " in split_alone:
                splits += 1
            else:
                cuts += 1
    return cuts, splits


def loops(units: list[HeardUnit]) -> int:
    """Loops in the transcript or the translation, by the loop guard's definition (its compression
    test is for one decode, not a talk)."""
    return sum(len(list(repeated_phrases(normalized_words(text))))
               for text in (" ".join(u.source_text for u in units), " ".join(u.translated_text for u in units)))


def score(talk: Talk, units: list[HeardUnit], reference_translation: list[str], sentence_mode_transcript: str = "") -> dict:
    import jiwer
    import sacrebleu

    spans = ear_voice_spans(talk, units)
    evs = [span for _, span in spans]
    first = [span for at, span in spans if at < 60]
    last = [span for at, span in spans if at >= talk.seconds - 60]
    transcript = " ".join(normalized_words(" ".join(unit.source_text for unit in units)))
    script = " ".join(normalized_words(" ".join(talk.sentences)))
    translation = " ".join(unit.translated_text for unit in units)
    reference = " ".join(reference_translation)
    heard = sum(unit.heard_seconds for unit in units if unit.heard_start is not None)
    cuts, splits = cut_words(talk, units, sentence_mode_transcript)
    return {
        "talk_seconds": round(talk.seconds, 1),
        "script_words": len(talk.words),
        "units": len(units),
        "unit_words_mean": round(statistics.mean(len(normalized_words(u.source_text)) for u in units), 1)
        if units else 0,
        "units_dropped": sum(unit.heard_start is None for unit in units),
        "ear_voice_span_s": {"words": len(evs), "p50": _median(evs), "p95": _percentile(evs, 95),
                             "max": round(max(evs), 3) if evs else float("nan"),
                             "first_minute_p50": _median(first), "last_minute_p50": _median(last)},
        "simuleval": simuleval_latency(talk, units, reference_translation),
        "translated_speech_seconds": round(heard, 1),
        "wer": round(jiwer.wer(script, transcript), 4) if transcript else 1.0,
        "chrf": round(sacrebleu.corpus_chrf([translation], [[reference]]).score, 1),
        "bleu": round(sacrebleu.corpus_bleu([translation], [[reference]]).score, 1),
        "cut_words": cuts,
        "recognizer_split_words": splits,
        "loops": loops(units),
    }


