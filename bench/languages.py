"""Quality and cost of every language pair the CPU profile serves (api/lingo_api/languages.json).

For each pair: the source language's probe sentence (lingo_worker.language_matrix.PROBES) is
spoken by the best voice installed (bench/speech.py) and recognized by the worker's Whisper (word error rate against the
sentence), the recognized text is translated by Apertium (output shown), the translation is
spoken and recognized again in the target language (round-trip word error rate against the
translation: how intelligible the synthesized speech is; "n/a" where Whisper lacks the target),
and each stage is timed. The engines run in this process, exactly as the worker builds them.

Run: python -m bench.languages   (JSON, markdown and PNG in bench/results/)
"""

from __future__ import annotations

import json
import re
import time

import numpy as np

from lingo_api.languages import MATRIX_FILE
from lingo_worker.audio_output import resample
from lingo_worker.engines.base import ASR_SAMPLE_RATE
from lingo_worker.engines.languages import iso639_1
from lingo_worker.engines.registry import build_engines
from lingo_worker.language_matrix import PROBES

from . import speech
from .common import machine, summary, write_results


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = _words(reference), _words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    distance = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        previous, distance[0] = distance[0], i
        for j, other in enumerate(hyp, 1):
            previous, distance[j] = distance[j], min(distance[j] + 1, distance[j - 1] + 1, previous + (word != other))
    return round(distance[-1] / len(ref), 3)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def speak(text: str, language: str) -> np.ndarray:
    """The sentence spoken, as the recognizer takes it (float32 at its sample rate)."""
    samples, rate = speech.speak(text, language)
    return resample(samples.astype(np.float32) / 32768, rate, ASR_SAMPLE_RATE)


def main() -> None:
    engines = build_engines("cpu", None)
    translator, synthesizer = engines.translator, engines.synthesizer
    rows = []
    try:
        for pair in json.loads(MATRIX_FILE.read_text())["pairs"]:
            source, target = pair["source"], pair["target"]
            sentence = PROBES[source]
            audio = speak(sentence, source)
            started = time.perf_counter()
            heard = engines.recognizer_for(source).transcribe(audio, source)  # as a worker picks it
            asr = time.perf_counter() - started
            translator.translate(heard, source, target)  # warm the route, as a worker does at start
            started = time.perf_counter()
            translated = translator.translate(heard, source, target)
            mt = time.perf_counter() - started
            started = time.perf_counter()
            spoken = synthesizer.synthesize(translated, target)
            tts = time.perf_counter() - started
            round_trip = None
            if engines.recognizer_for(target).supports(target):
                back = engines.recognizer_for(target).transcribe(
                    resample(spoken.samples.astype(np.float32) / 32768, spoken.sample_rate, ASR_SAMPLE_RATE), target)
                round_trip = word_error_rate(translated, back)
            rows.append({
                "source": source, "target": target, "pivot": pair["pivot"], "route": pair["route"],
                "sentence": sentence, "heard": heard, "asr_wer": word_error_rate(sentence, heard),
                "translation": translated, "round_trip_wer": round_trip,
                "asr_ms": round(asr * 1000, 1), "mt_ms": round(mt * 1000, 1), "tts_ms": round(tts * 1000, 1),
                "audio_seconds": round(len(audio) / ASR_SAMPLE_RATE, 2),
            })
            print(f"{source}->{target}: asr {rows[-1]['asr_wer']:.2f} rt {round_trip} {translated[:60]!r}", flush=True)
    finally:
        translator.close()
        synthesizer.close()
        speech.close()

    sources = sorted({row["source"] for row in rows})
    results = {
        "machine": machine(),
        "pairs": rows,
        "sources": len(sources),
        "asr_wer_by_source": {s: next(r["asr_wer"] for r in rows if r["source"] == s) for s in sources},
        "asr_ms": summary([r["asr_ms"] for r in rows]),
        "mt_ms": summary([r["mt_ms"] for r in rows]),
        "tts_ms": summary([r["tts_ms"] for r in rows]),
    }
    lines = [f"# Language pairs ({len(rows)} pairs from {len(sources)} source languages)", "",
             "| source | targets, direct | targets, through a pivot | ASR WER (probe) |", "|---|---|---|---|"]
    for source in sources:
        direct = ", ".join(r["target"] for r in rows if r["source"] == source and not r["pivot"])
        pivot = ", ".join(f"{r['target']} (via {iso639_1(r['route'][0].split('-')[-1])})" for r in rows
                          if r["source"] == source and r["pivot"])
        lines.append(f"| {source} | {direct or '–'} | {pivot or '–'} | {results['asr_wer_by_source'][source]:.2f} |")
    lines += ["",
             "| pair | route | ASR WER | translation of the recognized probe | round-trip WER | ASR ms | MT ms | TTS ms |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        route = " → ".join(row["route"]) + (" (pivot)" if row["pivot"] else "")
        round_trip = "n/a" if row["round_trip_wer"] is None else f"{row['round_trip_wer']:.2f}"
        lines.append(f"| {row['source']}→{row['target']} | {route} | {row['asr_wer']:.2f} | {row['translation']} | "
                     f"{round_trip} | {row['asr_ms']:.0f} | {row['mt_ms']:.1f} | {row['tts_ms']:.0f} |")
    lines += ["", f"Stage times over all pairs: ASR p50 {results['asr_ms']['p50']} ms, MT p50 "
              f"{results['mt_ms']['p50']} ms, TTS p50 {results['tts_ms']['p50']} ms.", ""]
    write_results("languages", results, "\n".join(lines) + "\n",
                  {"ASR ms": [r["asr_ms"] for r in rows], "MT ms": [r["mt_ms"] for r in rows],
                   "TTS ms": [r["tts_ms"] for r in rows]}, "milliseconds per stage and pair")


if __name__ == "__main__":
    main()
