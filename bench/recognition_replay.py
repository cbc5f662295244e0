"""The recognition policy replayed on a talk, decode by decode, without a clock.

The real-time benchmark (bench/simultaneous.py) shows what a listener hears, but two runs of the
same worker differ by about two points of WER on the Italian talk: where a decode falls depends
on how long the decodes before it took. Here the talk's audio goes through the worker's own
speaker stream (speech detector, streaming transcriber, translation units: worker/lingo_worker/
speaker_stream.py) 0.1 s at a time, and each chunk waits until every decode it triggers is done,
so a decode sees exactly STEP_SECONDS more speech than the one before and a run is repeatable.
That makes two recognition policies comparable below the real-time noise; it says nothing about
lag (there is no clock) and nothing is translated.

Reported per talk: the WER of the committed transcript against the script, beside sentence mode
(the same recognizer given each sentence's exact audio), units and why they closed, decodes, the
audio they covered and the mean time one took (on this machine's CPU), and how much audio had been
decoded after a word when it was committed (the policy's own share of the lag, p50 and p95).

Results: bench/results/<name>.{json,md,png} (the histogram: audio after each word at its commit).

Run: python -m bench.recognition_replay [--languages en,ca,it] [--sentences N] [--options JSON] [--name N]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import time

import numpy as np

from lingo_worker.pipeline import TranslationPipeline
from lingo_worker.task import TaskOptions, TranslationTask

from .common import write_results
from .talk import RATE, Talk, normalized_words, script, speak

CHUNK_SECONDS = 0.1
LISTS = ("transcript", "heard_after")  # kept out of the progress lines


class ReplayPipeline(TranslationPipeline):
    """The worker's pipeline with decodes run in place (so they finish before the next chunk) and
    units collected instead of translated."""

    def __init__(self, engines, task: TranslationTask):
        super().__init__(engines, task, emit=self._ignore)
        self.units = []
        self.decodes = 0
        self.decoded_seconds = 0.0
        self.decoding_seconds = 0.0  # wall time spent in the recognizer (depends on the CPU)
        self.decoded_until = 0.0  # stream time the last decode's audio reached
        self.heard_after = []  # seconds of audio decoded after each word when it was committed

    @staticmethod
    async def _ignore(*_args, **_kwargs) -> None:
        return None

    async def recognize(self, snapshot, final: bool):
        recognizer = await self.loaded_recognizer()
        self.decodes += 1
        self.decoded_seconds += snapshot.seconds
        self.decoded_until = snapshot.end
        started = time.perf_counter()
        try:
            return recognizer.transcribe_words(snapshot.audio, self.task.source_language)
        finally:
            self.decoding_seconds += time.perf_counter() - started

    async def partial(self, *_args) -> None:
        return None

    async def process_unit(self, speaker, recognized) -> None:
        self.units.append(recognized.unit)


async def replay(engines, talk: Talk, options: dict) -> dict:
    task = TranslationTask(source_language=talk.language, target_languages=["es"],
                           options=TaskOptions(**{"speech": False, **options}))
    pipeline = ReplayPipeline(engines, task)
    speaker = pipeline.speaker("replay")
    commit = speaker.transcriber._commit

    def commit_noting_lag(words):  # the policy's own lag, in audio: what a word waited to be committed
        pipeline.heard_after.extend(pipeline.decoded_until - word.end for word in words)
        return commit(words)

    speaker.transcriber._commit = commit_noting_lag
    chunk = int(CHUNK_SECONDS * RATE)
    started = time.monotonic()
    for at in range(0, len(talk.audio), chunk):
        await speaker.feed(talk.audio[at:at + chunk])
        while not speaker.caught_up:  # the decodes this chunk triggers, done
            await asyncio.sleep(0)
    await speaker.feed(np.zeros(RATE, dtype=np.float32))  # a second of silence ends the last utterance
    await speaker.close()
    transcript = " ".join(unit.text for unit in pipeline.units)
    return {"units": len(pipeline.units), "reasons": dict(collections.Counter(u.reason for u in pipeline.units)),
            "decodes": pipeline.decodes, "decoded_seconds": round(pipeline.decoded_seconds, 1),
            "decoding_ms_mean": round(1000 * pipeline.decoding_seconds / max(1, pipeline.decodes)),
            "heard_after_commit_s": {"p50": round(float(np.percentile(pipeline.heard_after, 50)), 3),
                                     "p95": round(float(np.percentile(pipeline.heard_after, 95)), 3)},
            "heard_after": [round(seconds, 3) for seconds in pipeline.heard_after],
            "seconds": round(time.monotonic() - started, 1), "transcript": transcript,
            "wer": wer(talk, transcript)}


def sentence_mode_transcript(talk: Talk, recognizer) -> str:
    """Each sentence recognized alone from its exact audio (sentence mode at its best)."""
    return " ".join(recognizer.transcribe(talk.audio[int((s - 0.05) * RATE):int((e + 0.1) * RATE)], talk.language)
                    for s, e in talk.sentence_spans)


def wer(talk: Talk, transcript: str) -> float:
    import jiwer

    return round(jiwer.wer(" ".join(normalized_words(" ".join(talk.sentences))),
                           " ".join(normalized_words(transcript))), 4)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.recognition_replay", description=__doc__.split("\n")[0])
    parser.add_argument("--languages", default="en,ca,it")
    parser.add_argument("--sentences", type=int, default=0, help="only the first N sentences of each talk")
    parser.add_argument("--options", default="{}", help="task options (JSON)")
    parser.add_argument("--no-sentence-mode", action="store_true", help="skip the sentence-mode baseline")
    parser.add_argument("--name", default="recognition_replay", help="results file name in bench/results/")
    args = parser.parse_args()

    from lingo_worker.engines.registry import build_engines

    engines = build_engines("cpu", None)
    out = {}
    for language in args.languages.split(","):
        talk = speak(language, script(language, args.sentences or None))
        result = asyncio.run(replay(engines, talk, json.loads(args.options)))
        if not args.no_sentence_mode:
            result["sentence_mode_wer"] = wer(talk, sentence_mode_transcript(talk, engines.recognizer_for(language)))
        out[language] = result
        print(json.dumps({language: {k: v for k, v in result.items() if k not in LISTS}}), flush=True)
    engines.translator.close()
    write_results(args.name, {"benchmark": "recognition_replay", "sentences": args.sentences or None,
                              "options": json.loads(args.options),
                              "talks": {language: {k: v for k, v in result.items() if k != "heard_after"}
                                        for language, result in out.items()}},
                  markdown(out, args.sentences), {language: result["heard_after"] for language, result in out.items()},
                  "audio decoded after a word when it was committed (s)")


def markdown(out: dict, sentences: int) -> str:
    lines = [f"# Recognition policy replayed, decode by decode ({'first %d sentences' % sentences if sentences else 'whole talks'})",
             "",
             "| talk | WER (sentence mode) | decodes | audio per decode (s) | time per decode (ms) "
             "| audio after a word at its commit p50 / p95 (s) | units by reason |",
             "|---|---|---|---|---|---|---|"]
    for language, result in out.items():
        sentence_mode = f" ({result['sentence_mode_wer']:.1%})" if "sentence_mode_wer" in result else ""
        after = result["heard_after_commit_s"]
        lines.append(f"| {language} | {result['wer']:.1%}{sentence_mode} | {result['decodes']} "
                     f"| {result['decoded_seconds'] / max(1, result['decodes']):.2f} | {result['decoding_ms_mean']} "
                     f"| {after['p50']:.2f} / {after['p95']:.2f} "
                     f"| {', '.join(f'{reason} {count}' for reason, count in result['reasons'].items())} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
