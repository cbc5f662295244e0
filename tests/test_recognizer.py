"""The CPU profile's Whisper as the worker runs it: a long sentence is decoded to its end."""

from __future__ import annotations

import difflib

import pytest

from lingo_worker.audio_output import to_asr_samples
from lingo_worker.engines.registry import build_engines

# Italian and Catalan speech runs at 5-6 of Whisper's text tokens a second, more when spoken fast;
# a decode bounded for English's 4 stopped before these sentences' last words ("... la sera").
TEMPO = 1.4
LONG_SENTENCES = {
    "it": "E vogliono poter contare sul fatto che l'autobus arrivi, anche tardi la sera e la domenica.",
    "ca": "Volen poder confiar que l'autobús arribarà, també tard al vespre i els diumenges al matí.",
}


@pytest.fixture(scope="module")
def engines():
    built = build_engines("cpu", None)
    yield built
    built.translator.close()
    built.synthesizer.close()


@pytest.mark.parametrize("language", sorted(LONG_SENTENCES))
def test_a_fast_long_sentence_is_decoded_to_its_last_word(engines, language):
    sentence = LONG_SENTENCES[language]
    spoken = engines.synthesizer.synthesize(sentence, language, tempo=TEMPO)
    audio = to_asr_samples(spoken.samples, spoken.sample_rate)
    words = engines.recognizer_for(language).transcribe_words(audio, language)
    heard = [word.text.strip(".,").lower() for word in words]
    last = sentence.rstrip(".").split()[-1].lower()
    # Whisper base may mishear a word ("dominica"); cut off, it ends elsewhere ("... la sera").
    assert difflib.SequenceMatcher(a=heard[-1], b=last).ratio() >= 0.6, " ".join(heard)
