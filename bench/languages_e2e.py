"""Every source language end to end on the loopback stack: speech in through LiveKit, translated
speech out, with the real worker process and engines.

For each source language of api/lingo_api/languages.json, one session translates it into one target (a
direct pair, Spanish or English where there is one); the publisher speaks the language's probe
sentence (lingo_worker.language_matrix.PROBES, by bench/speech.py's voice) twice, in consecutive
interpretation (sentence by sentence, as bench/worker_latency.py measures), and the
benchmark records what the worker heard and translated, and end of speech -> first translated
audio at a subscriber. Sessions run one after another, each alone on the machine.

Run: python -m bench.languages_e2e   (JSON, markdown and PNG in bench/results/)
"""

from __future__ import annotations

import asyncio
import json

from lingo_api.languages import MATRIX_FILE
from lingo_loopback.stack import register_client
from lingo_worker.language_matrix import PROBES

from . import speech
from .common import loopback_stack, machine, summary, write_results
from .languages import word_error_rate
from .worker_latency import run

NAMESPACE = "bench"
PREFERRED_TARGETS = ("es", "en")


def one_pair_per_source(pairs: list[dict]) -> list[dict]:
    chosen = {}
    for pair in pairs:
        best = chosen.get(pair["source"])
        rank = (pair["pivot"], pair["target"] not in PREFERRED_TARGETS)
        if best is None or rank < (best["pivot"], best["target"] not in PREFERRED_TARGETS):
            chosen[pair["source"]] = pair
    return [chosen[source] for source in sorted(chosen)]


def main() -> None:
    pairs = one_pair_per_source(json.loads(MATRIX_FILE.read_text())["pairs"])
    rows = []
    with loopback_stack(NAMESPACE, with_kubelet=True) as (cluster, facade):
        secret = register_client(cluster, NAMESPACE, "bench", max_sessions=10)
        for pair in pairs:
            source, target = pair["source"], pair["target"]
            raw = asyncio.run(run(facade, secret, 2, target, source, [PROBES[source]]))
            heard = raw["texts"]["heard"]
            worker_ms = [t[f"end_of_speech_to_audio_ms.{target}"] for t in raw["timings"]
                         if f"end_of_speech_to_audio_ms.{target}" in t]
            rows.append({
                "source": source, "target": target, "route": pair["route"], "sentence": PROBES[source],
                "heard": heard, "asr_wer": word_error_rate(PROBES[source], heard[0]) if heard else None,
                "translated": raw["texts"]["translated"], "segments": raw["segments"],
                "translated_audio_segments": len(raw["client_ms"]),
                "client_observed_ms": summary(raw["client_ms"]), "worker_observed_ms": summary(worker_ms),
            })
            print(f"{source}->{target}: {rows[-1]['translated_audio_segments']}/{raw['segments']} "
                  f"{raw['client_ms']} {rows[-1]['translated'][:1]}", flush=True)
    speech.close()
    translated = [row for row in rows if row["translated_audio_segments"] and any(row["translated"])]
    results = {"benchmark": "languages_e2e", "machine": machine(), "pairs": rows,
               "sources_translated_end_to_end": len(translated), "sources": len(rows)}
    lines = [f"# Every source language end to end ({len(translated)} of {len(rows)} sources translated, "
             f"{machine()['cpus']} CPUs)", "",
             "| pair | heard (first time) | WER | translated (first time) | audio out | end of speech → audio p50 / max |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        client = row["client_observed_ms"]
        wer = "–" if row["asr_wer"] is None else f"{row['asr_wer']:.2f}"
        lines.append(f"| {row['source']}→{row['target']} | {(row['heard'] or ['–'])[0]} | {wer} | "
                     f"{(row['translated'] or ['–'])[0]} | {row['translated_audio_segments']}/{row['segments']} | "
                     f"{client['p50']} / {client['max']} ms |")
    lines += ["", "Sentences are the probes of lingo_worker.language_matrix, spoken by bench/speech.py's voice "
              "(Festival for ca, en, it; espeak-ng otherwise); each spoken twice, 3 s apart.", ""]
    write_results("languages_e2e", results, "\n".join(lines) + "\n",
                  {"client-observed": [row["client_observed_ms"]["p50"] for row in rows if row["translated_audio_segments"]]},
                  "milliseconds after end of speech (p50 per source)")


if __name__ == "__main__":
    main()
