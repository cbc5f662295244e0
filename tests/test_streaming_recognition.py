"""Streaming recognition as pure logic (no audio engines): LocalAgreement commits, translation units
at word boundaries, the loop and hallucination guard, and the speech backlog's tempo."""

import numpy as np
import pytest

from lingo_worker.engines.base import KEPT_SILENCE_SECONDS, RecognizedWord, Synthesized
from lingo_worker.loop_guard import cut_loops, drop_hallucinations
from lingo_worker.speech_backlog import BacklogSettings
from lingo_worker.streaming_transcriber import StreamingTranscriber, Word
from lingo_worker.translation_units import UnitBuilder

RATE = 16000


def timed(text, start=0.0, step=0.4, probability=0.9):
    """Words of `text`, one every `step` seconds from `start`, as a decode returns them."""
    return [RecognizedWord(word, round(start + i * step, 3), round(start + (i + 1) * step - 0.05, 3), probability)
            for i, word in enumerate(text.split())]


def grow(transcriber, seconds):
    transcriber.append(np.zeros(int(seconds * RATE), dtype=np.float32), transcriber.end if len(transcriber.audio) else 0.0)
    return transcriber.snapshot()


# -- LocalAgreement ------------------------------------------------------------------------------

def test_words_are_committed_once_two_decodes_agree_and_audio_follows_them():
    transcriber = StreamingTranscriber()
    first = grow(transcriber, 2.0)
    assert transcriber.agree(timed("the buses were late"), first, right_context=0.5) == []
    second = grow(transcriber, 0.4)
    committed = transcriber.agree(timed("the buses were late again"), second, right_context=1.0)
    # "late" ends at 1.55 s, within 1 s of the 2.4 s decoded: not settled yet
    assert [w.text for w in committed] == ["the", "buses", "were"]
    assert [w.text for w in transcriber.tentative] == ["late", "again"]


@pytest.mark.parametrize("late_probability, committed", [(0.95, "the buses were late"), (0.5, "the buses were")])
def test_a_word_both_decodes_are_sure_of_needs_less_audio_after_it(late_probability, committed):
    transcriber = StreamingTranscriber()
    transcriber.agree(timed("the buses were late", probability=0.95), grow(transcriber, 2.0), right_context=0.7,
                      sure_right_context=0.35)
    second = timed("the buses were late again", probability=0.95)
    second[3] = RecognizedWord("late", second[3].start, second[3].end, late_probability)
    # 2.1 s decoded: "late" ends at 1.55 s, 0.55 s before the end: enough only for a sure word
    words = transcriber.agree(second, grow(transcriber, 0.1), right_context=0.7, sure_right_context=0.35)
    assert " ".join(w.text for w in words) == committed


def test_a_disagreement_stops_the_commit_at_the_first_changed_word():
    transcriber = StreamingTranscriber()
    transcriber.agree(timed("we need four new lines"), grow(transcriber, 3.0), right_context=0.0)
    committed = transcriber.agree(timed("we need more new lines"), grow(transcriber, 0.4), right_context=0.0)
    assert [w.text for w in committed] == ["we", "need"]


def test_committed_words_heard_again_after_a_trim_are_not_committed_twice():
    transcriber = StreamingTranscriber()
    transcriber.agree(timed("one two three four five six"), grow(transcriber, 2.5), right_context=0.0)
    committed = transcriber.agree(timed("one two three four five six"), grow(transcriber, 0.1), right_context=0.0)
    assert [w.text for w in committed] == "one two three four five six".split()
    transcriber.trim(committed[2].end)  # the buffer now starts after "three"
    snapshot = grow(transcriber, 1.0)
    # the next decode hears "four five six" again (times relative to the trimmed buffer), then new words
    again = timed("four five six seven eight", start=0.0)
    transcriber.agree(again, snapshot, right_context=0.0)
    committed = transcriber.agree(again, grow(transcriber, 0.1), right_context=0.0)
    assert [w.text for w in committed] == ["seven", "eight"]


def test_a_committed_word_said_again_later_is_not_taken_for_its_echo():
    transcriber = StreamingTranscriber()
    transcriber.agree(timed("arribava tard"), grow(transcriber, 1.5), right_context=0.0)
    committed = transcriber.agree(timed("arribava tard"), grow(transcriber, 0.1), right_context=0.0)
    assert [w.text for w in committed] == ["arribava", "tard"]
    transcriber.trim(committed[0].end)  # the buffer starts at "tard"
    # This decode mishears the committed "tard", then the speaker says it again.
    again = timed("tar o que no tard mai", start=0.0)
    transcriber.agree(again, grow(transcriber, 1.5), right_context=0.0)
    committed = transcriber.agree(again, grow(transcriber, 0.1), right_context=0.0)
    assert [w.text for w in committed] == ["o", "que", "no", "tard", "mai"]


def test_a_word_said_twice_in_a_row_is_kept_twice():
    transcriber = StreamingTranscriber()
    transcriber.agree(timed("it was very,"), grow(transcriber, 1.5), right_context=0.0)
    transcriber.agree(timed("it was very,"), grow(transcriber, 0.1), right_context=0.0)
    transcriber.trim(transcriber.committed_end)
    snapshot = grow(transcriber, 1.0)
    later = timed("very late", start=0.05)  # the second "very" starts 0.4 s after the first
    transcriber.agree(later, snapshot, right_context=0.0)
    committed = transcriber.agree(later, grow(transcriber, 0.1), right_context=0.0)
    assert [w.text for w in committed] == ["very", "late"]


def test_the_end_of_an_utterance_commits_everything_heard():
    transcriber = StreamingTranscriber()
    snapshot = grow(transcriber, 1.5)
    assert [w.text for w in transcriber.commit_all(timed("thank you all"), snapshot)] == ["thank", "you", "all"]
    transcriber.clear()
    assert transcriber.seconds == 0 and transcriber.tentative == []


# -- translation units ----------------------------------------------------------------------------

def words(text, start=0.0, step=0.4):
    return [Word(w.text, w.start, w.end, w.probability) for w in timed(text, start, step)]


def test_a_unit_closes_at_a_sentence_end_once_the_next_word_is_heard():
    builder = UnitBuilder(simultaneous=True, max_seconds=10)
    spoken = words("Buses were late. Trains")
    assert builder.add(spoken[:3], []) == []  # "late." may be Whisper ending a cut decode
    closed = builder.add(spoken[3:], [])
    assert [(u.text, u.reason) for u in closed] == [("Buses were late.", "sentence")]
    assert [w.text for w in builder.words] == ["Trains"]


def test_a_clause_needs_a_few_words_and_a_breath_confirms_punctuation():
    builder = UnitBuilder(simultaneous=True, max_seconds=10)
    assert builder.add(words("Well, the"), []) == []  # "Well," alone is no unit
    closed = builder.add(words("network grew,", start=0.8), [], paused=True)
    assert [(u.text, u.reason) for u in closed] == [("Well, the network grew,", "clause")]


def test_the_length_cap_always_cuts_between_words():
    builder = UnitBuilder(simultaneous=True, max_seconds=1.6)
    talk = words(" ".join(f"word{i}" for i in range(40)), step=0.3)
    closed = builder.add(talk, [])
    assert closed and all(u.reason == "length" for u in closed)
    assert [w for u in closed for w in u.words] + builder.words == talk  # nothing lost, nothing split
    assert all(u.end - u.start >= 1.6 and u.end - u.start < 1.6 + 0.3 for u in closed)


def test_the_length_cap_leaves_a_short_leading_word_to_the_next_unit():
    builder = UnitBuilder(simultaneous=True, max_seconds=1.45)
    closed = builder.add(words("una macchina quando compi di ciotto anni", step=0.3), [])  # "di" reaches the cap
    assert [(u.text, u.reason) for u in closed] == [("una macchina quando compi", "length")]
    assert [w.text for w in builder.words] == ["di", "ciotto", "anni"]


def test_a_pause_between_words_ends_the_unit():
    builder = UnitBuilder(simultaneous=True, max_seconds=10)
    closed = builder.add(words("so we") + words("read", start=1.5), [])
    assert [(u.text, u.reason) for u in closed] == [("so we", "pause")]


def test_consecutive_units_close_only_at_the_cap_or_the_end():
    builder = UnitBuilder(simultaneous=False, max_seconds=15)
    assert builder.add(words("One. Two, three four five. Six"), [], paused=True) == []
    unit = builder.close("end_of_speech")
    assert unit.text == "One. Two, three four five. Six" and builder.close("flush") is None


# -- loop and hallucination guard -----------------------------------------------------------------

# Whisper's output on a segment cut at 15 s, recorded in issue 21's run (2026-12-06).
RECORDED_LOOP = "while riders still wait at crowded stops, wide, wide, wide, wide, wide, wide, wide, wide"


def test_the_recorded_loop_is_cut_after_its_first_occurrence():
    kept, looped = cut_loops(timed(RECORDED_LOOP))
    assert looped and " ".join(w.text for w in kept) == "while riders still wait at crowded stops, wide,"


def test_repeating_a_word_twice_is_speech_and_a_looping_phrase_is_cut():
    kept, looped = cut_loops(timed("it was very, very late"))
    assert not looped and len(kept) == 5
    kept, looped = cut_loops(timed("and then we and then we and then we and then we went"))
    assert looped and " ".join(w.text for w in kept) == "and then we"


def test_the_transcriber_counts_loops_and_never_commits_them():
    transcriber = StreamingTranscriber()
    transcriber.agree(timed(RECORDED_LOOP, step=0.25), grow(transcriber, 5.0), right_context=0.0)
    committed = transcriber.agree(timed(RECORDED_LOOP, step=0.25), grow(transcriber, 0.4), right_context=0.0)
    assert transcriber.loops == 2 and [w.text for w in committed][-1] == "wide,"
    assert sum(w.text == "wide," for w in committed) == 1


def test_invented_low_probability_words_are_dropped():
    heard = [RecognizedWord("the", 0, 0.2, 0.95), RecognizedWord("stop", 0.2, 0.5, 0.9),
             RecognizedWord("i", 0.6, 0.7, 0.12), RecognizedWord("el", 0.7, 0.8, 0.2),
             RecognizedWord("que", 0.8, 0.9, 0.08), RecognizedWord("was", 1.0, 1.2, 0.85),
             RecognizedWord("full", 1.2, 1.5, 0.25), RecognizedWord("again", 1.5, 1.8, 0.9),
             RecognizedWord("so", 1.9, 2.0, 0.05)]
    kept, dropped = drop_hallucinations(heard)  # a lone unsure word stays, a nearly certain invention goes
    assert [w.text for w in kept] == ["the", "stop", "was", "full", "again"] and dropped == 4


# -- speech backlog --------------------------------------------------------------------------------

BACKLOG = BacklogSettings(desired_ms=500, max_ms=6000, auto_tempo=True, min_tempo=1.15, max_tempo=1.45)


def test_speech_speeds_up_as_the_queue_grows_within_the_limit():
    assert BACKLOG.tempo(0) == 1.0 and BACKLOG.tempo(500) == 1.0
    assert BACKLOG.tempo(501) == pytest.approx(1.15, abs=1e-3)
    assert BACKLOG.tempo(3250) == pytest.approx(1.30, abs=1e-3)
    assert BACKLOG.tempo(6000) == 1.45 and BACKLOG.tempo(60_000) == 1.45


def test_a_translation_longer_than_its_source_is_spoken_faster_but_not_past_the_limit():
    assert BACKLOG.tempo(0, source_ms=2000, natural_ms=2340) == pytest.approx(1.3, abs=1e-3)
    assert BACKLOG.tempo(0, source_ms=1000, natural_ms=4000) == 1.45
    assert BacklogSettings(500, 6000, False, 1.15, 1.45).tempo(5000, 1000, 4000) == 1.0


def test_beyond_the_maximum_old_speech_must_make_room():
    assert BACKLOG.excess_ms(5000, 800) == 0
    assert BACKLOG.excess_ms(5500, 1500) == 1000


def test_a_units_speech_enters_the_backlog_without_the_voices_trailing_silence():
    speech = np.concatenate([np.zeros(1600), np.full(8000, 3000), np.zeros(4000)]).astype(np.int16)
    trimmed = Synthesized(speech, 16000).trimmed()
    kept = int(KEPT_SILENCE_SECONDS * 16000)
    assert len(trimmed.samples) == 8000 + 2 * kept and trimmed.samples[kept] == 3000
    silence = Synthesized(np.zeros(800, dtype=np.int16), 16000)
    assert silence.trimmed().samples.size == 800
