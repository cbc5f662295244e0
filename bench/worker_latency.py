"""Worker latency on the CPU engines: speech in, translated speech out, per segment.

A session is created through the facade on the loopback stack, its worker runs as a real
process (loopback kubelet), a publisher speaks English sentences (bench/speech.py) with pauses,
and a subscriber listens on the translation track. Reported per segment:
  - client-observed: end of the spoken sentence -> first audible frame of its translation,
  - worker-observed: end of speech (VAD) -> first translated frame sent,
  - each stage's time and real-time factor (ASR, MT, TTS).

Run: python -m bench.worker_latency [--rounds 2] [--language es] [--sessions 1]
(--sessions N: N sessions speaking at once, each with its own worker.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp
import numpy as np
from livekit import rtc

from lingo_api.livekit_sdk import run_and_exit
from lingo_loopback.stack import register_client
from lingo_worker.audio_output import track_name

from . import speech
from .common import (loopback_stack, machine, process_table, summary, tree_cpu_seconds, tree_rss_mb, worker_pids,
                     write_results)

NAMESPACE = "bench"
SENTENCES = [
    "Good morning everyone.",
    "The meeting starts at ten o'clock.",
    "Please open the window.",
    "I would like a cup of coffee.",
    "Thank you very much for your help.",
    "Where is the train station?",
]
PAUSE_SECONDS = 3.0
AUDIBLE = 300  # mean |sample| of a 10 ms frame that counts as sound
# Goal for one session on 2 cores: end of speech -> first translated audio at a subscriber.
TARGET_P50_MS, TARGET_P95_MS = 800, 1200


class Listener:
    """Records the onset times of utterances on the translation track."""

    def __init__(self):
        self.onsets: list[float] = []
        self._last_audible = 0.0

    async def follow(self, track: rtc.Track) -> None:
        async for event in rtc.AudioStream(track, sample_rate=16000, num_channels=1):
            now = time.monotonic()
            if np.abs(np.frombuffer(event.frame.data, dtype=np.int16)).mean() > AUDIBLE:
                if now - self._last_audible > 0.4:
                    self.onsets.append(now)
                self._last_audible = now


async def run(facade: str, secret: str, rounds: int, language: str, source: str = "en",
              sentences: list[str] = SENTENCES, interpretation: str = "consecutive") -> dict:
    """One session speaking `sentences` (`rounds` times) in `source`, translated into `language`.
    Consecutive by default: "end of speech -> translated audio" is a sentence-by-sentence measure
    (in simultaneous interpretation the translation starts before the sentence ends)."""
    headers = {"ClientID": "bench", "ClientSecret": secret}
    async with aiohttp.ClientSession(base_url=facade) as http:
        async with http.post("/session-storage/sessions", headers=headers, json={"data": {
                "publisher_count": 1, "subscriber_count": 1, "source_language": source,
                "target_languages": [language]}}) as response:
            data = (await response.json())["data"]
        while True:
            async with http.get(f"/session-storage/sessions/{data['session_id']}", headers=headers) as response:
                if (await response.json())["data"]["worker_ready"]:
                    break
            await asyncio.sleep(0.5)

        listener, listening = Listener(), rtc.Room()

        @listening.on("track_subscribed")
        def _on_track(track, publication, participant):
            if publication.name == track_name(language):
                asyncio.ensure_future(listener.follow(track))

        await listening.connect(data["stream_url"], data["subscriber"][0])
        timings: list[dict] = []
        texts: dict[str, list[str]] = {"heard": [], "translated": []}
        async with http.ws_connect(data["control_url"], params={"token": data["publisher"][0]}) as control:
            await control.send_str(json.dumps({"message_type": "set_task",
                                               "data": {"options": {"interpretation": interpretation}}}))
            async for message in control:  # until the worker acknowledges it
                if json.loads(message.data)["message_type"] in ("current_task", "task_status", "error"):
                    break
        ws = await http.ws_connect(data["control_url"], params={"token": data["subscriber"][0]})

        async def collect():
            async for message in ws:
                parsed = json.loads(message.data)
                if parsed["message_type"] == "pipeline_timings":
                    timings.append(parsed["data"]["timings"])
                elif parsed["message_type"] == "validated_transcription":
                    texts["heard"].append(parsed["data"]["transcription"]["text"])
                elif parsed["message_type"] == "translated_transcription":
                    texts["translated"].append(parsed["data"]["transcription"]["text"])

        collector = asyncio.create_task(collect())
        speaker = rtc.Room()
        await speaker.connect(data["stream_url"], data["publisher"][0])
        clips = [speech.speak(text, source) for text in sentences] * rounds
        rate = clips[0][1]
        source = rtc.AudioSource(rate, 1, queue_size_ms=100)
        await speaker.local_participant.publish_track(
            rtc.LocalAudioTrack.create_audio_track("microphone", source),
            rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        await asyncio.sleep(1.5)
        frame = rate // 100
        silence = np.zeros(int(rate * PAUSE_SECONDS), dtype=np.int16)
        ends: list[float] = []
        speaking_from = time.monotonic()
        for samples, _ in clips:
            for chunk_source in (samples, silence):
                for start in range(0, len(chunk_source) - frame + 1, frame):
                    await source.capture_frame(rtc.AudioFrame(chunk_source[start:start + frame].tobytes(), rate, 1, frame))
                if chunk_source is samples:
                    await source.wait_for_playout()
                    ends.append(time.monotonic())
        await asyncio.sleep(4)
        collector.cancel()
        await ws.close()
        await speaker.disconnect()
        await listening.disconnect()
        async with http.delete(f"/session-storage/sessions/{data['session_id']}", headers=headers):
            pass

    # Pair each sentence end with the first utterance onset after it (and before the next end + pause).
    client_ms = []
    for i, end in enumerate(ends):
        limit = ends[i + 1] if i + 1 < len(ends) else end + 10
        onset = next((t for t in listener.onsets if end < t < limit), None)
        if onset is not None:
            client_ms.append((onset - end) * 1000)
    return {"segments": len(ends), "client_ms": client_ms, "timings": timings, "texts": texts,
            "speaking": [(speaking_from, ends[-1] if ends else speaking_from)]}


async def sample_worker_cpu(samples: list) -> None:
    """Every half second: (time, CPU seconds, RSS MB) of each session's worker process tree."""
    while True:
        table = await asyncio.to_thread(process_table)
        pids = await asyncio.to_thread(worker_pids, b"LINGO_ROOM=")
        rss = {pid: await asyncio.to_thread(tree_rss_mb, pid) for pid in pids}
        samples.append((time.monotonic(), {pid: tree_cpu_seconds(pid, table) for pid in pids if pid in table}, rss))
        await asyncio.sleep(0.5)


def worker_usage_while_speaking(samples: list, speaking: list[tuple[float, float]]) -> dict:
    """Mean CPU (% of a core) per worker from the first sentence to the last one's end, and the
    largest RSS seen then."""
    start, end = min(s for s, _ in speaking), max(e for _, e in speaking)
    window = [s for s in samples if start <= s[0] <= end]
    if len(window) < 2:
        return {"cpu_percent": [], "rss_mb": []}
    (t0, cpu0, _), (t1, cpu1, _) = window[0], window[-1]
    pids = [pid for pid in cpu0 if pid in cpu1]
    return {"cpu_percent": [round((cpu1[pid] - cpu0[pid]) / (t1 - t0) * 100, 1) for pid in pids],
            "rss_mb": [round(max(s[2].get(pid, 0) for s in window)) for pid in pids]}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_latency", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--language", default="es")
    parser.add_argument("--sessions", type=int, default=1)
    args = parser.parse_args()

    async def all_sessions(facade: str, secret: str) -> dict:
        sampling = asyncio.create_task(sample_worker_cpu(usage_samples))
        runs = await asyncio.gather(*(run(facade, secret, args.rounds, args.language) for _ in range(args.sessions)))
        sampling.cancel()
        return {key: sum((r[key] for r in runs), [] if key != "segments" else 0) for key in runs[0] if key != "texts"}

    usage_samples: list[tuple[float, dict[int, float], dict[int, float]]] = []

    try:
        with loopback_stack(NAMESPACE, with_kubelet=True) as (cluster, facade):
            secret = register_client(cluster, NAMESPACE, "bench", max_sessions=10)
            raw = asyncio.run(all_sessions(facade, secret))
    finally:
        speech.close()  # Festival's scratch folder goes with it
    lang, timings = args.language, raw["timings"]
    usage = worker_usage_while_speaking(usage_samples, raw["speaking"])
    # pipeline_timings carries Palabra's flat {name: value}; per-language stages are "<stage>.<lang>".
    worker_ms = [t[f"end_of_speech_to_audio_ms.{lang}"] for t in timings if f"end_of_speech_to_audio_ms.{lang}" in t]
    stages = {
        "asr_ms": summary([t["asr_ms"] for t in timings]),
        "mt_ms": summary([t[f"mt_ms.{lang}"] for t in timings if f"mt_ms.{lang}" in t]),
        "tts_ms": summary([t[f"tts_ms.{lang}"] for t in timings if f"tts_ms.{lang}" in t]),
    }
    rtf = {
        "asr": summary([t["asr_ms"] / 1000 / t["audio_seconds"] for t in timings]),
        "mt (per second of speech)": summary([t[f"mt_ms.{lang}"] / 1000 / t["audio_seconds"] for t in timings
                                              if f"mt_ms.{lang}" in t]),
        "tts": summary([t[f"tts_ms.{lang}"] / 1000 / t[f"tts_audio_seconds.{lang}"] for t in timings
                        if t.get(f"tts_audio_seconds.{lang}")]),
    }
    client = summary(raw["client_ms"])
    worker = summary(worker_ms)
    results = {"benchmark": "worker_latency", "machine": machine(), "language": lang, "sessions": args.sessions,
               "segments": raw["segments"], "translated_segments": len(timings), "client_observed_ms": client,
               "worker_observed_ms": worker, "stage_ms": stages, "real_time_factor": rtf,
               "target_ms": {"p50": TARGET_P50_MS, "p95": TARGET_P95_MS}, "worker_usage": usage,
               "note": "includes the VAD's end-of-segment silence (400 ms, shrinking with longer speech)"}
    stage_rows = "\n".join(f"| {k} | {v['p50']} | {v['p95']} | {v['max']} |" for k, v in stages.items())
    rtf_rows = "\n".join(f"| {k} | {v['p50']} | {v['p95']} |" for k, v in rtf.items())
    markdown = f"""# Worker latency, CPU engines, en→{lang}, {args.sessions} session(s) at once, consecutive interpretation ({machine()['cpus']} CPUs, {raw['segments']} sentences)

| end of speech → first translated audio | p50 | p95 | max | goal (one session) |
|---|---|---|---|---|
| client-observed (sentence end → audible frame at a subscriber) | {client['p50']} ms | {client['p95']} ms | {client['max']} ms | p50 < {TARGET_P50_MS} ms, p95 < {TARGET_P95_MS} ms |
| worker-observed (VAD end of speech → first frame sent) | {worker['p50']} ms | {worker['p95']} ms | {worker['max']} ms | |

Both include the silence the VAD waits for before closing a segment (400 ms, shrinking by 50 ms
per second of speech to 200 ms).
{len(timings)} of {raw['segments']} sentences produced translated speech.

Each worker (with its Apertium and Festival processes) while its publisher spoke (sentences with
{PAUSE_SECONDS:g} s pauses): CPU {usage['cpu_percent']} % of a core, RSS {usage['rss_mb']} MB.

| stage | p50 ms | p95 ms | max ms |
|---|---|---|---|
{stage_rows}

| real-time factor | p50 | p95 |
|---|---|---|
{rtf_rows}
"""
    write_results("worker_latency" if args.sessions == 1 else f"worker_latency_{args.sessions}_sessions", results, markdown,
                  {"client-observed": raw["client_ms"], "worker-observed": worker_ms}, "milliseconds after end of speech")


if __name__ == "__main__":
    run_and_exit(main)
