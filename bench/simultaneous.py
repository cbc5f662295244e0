"""Simultaneous interpretation of whole talks, through the real stack.

The loopback stack runs what the chart installs by default (operator, facade, kubelet, and a
WorkerPool of one idle en->es worker). For each run a session is created through the facade and a
talk of the project's own (bench/talks/, 10 to 12 minutes, 100-250 ms between sentences, spoken
by Festival, bench/talk.py) is streamed in real time:
  - over the control WebSocket (Palabra's ws mode: input_audio_data in, output_audio_data out),
    the translation played by a real-time player model on arrival; or
  - as a LiveKit microphone track, the translation heard by a subscriber on `translation_<lang>`
    (each unit's start found in the received audio: the first onset after its translation was
    sent and after the unit before it had played).
Several languages joined by "+" talk at once, one session each.

Reported per run (bench/interpretation_scores.py): ear-voice span (p50, p95, first and last
minute), SimulEval's StartOffset/EndOffset and AL/LAAL, backlog and tempo from the worker's
pipeline_timings, units dropped, cut words, loops, the worker's CPU and RSS; the word error rate of
the committed transcript and, for comparison, of each sentence recognized on its own (sentence
mode at its best: the same recognizer given each sentence's exact audio); chrF and BLEU of the
talk's translation against the sentence-by-sentence translation of the script.

Run: python -m bench.simultaneous [--plan "en;ca;it;livekit:en;en+ca+it"] [--sentences N]
     [--target es] [--options '{"interpretation": "consecutive"}'] [--name simultaneous] [--rescore] [--append]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
from livekit import rtc

from lingo_api import resources as r
from lingo_api.livekit_sdk import run_and_exit
from lingo_loopback.stack import register_client
from lingo_worker.audio_output import track_name

from .common import (RESULTS_DIR, loopback_stack, process_table, provenance, provenance_line, tree_cpu_seconds,
                     tree_rss_mb)
from .interpretation_scores import HeardUnit, ear_voice_spans, score
from .talk import RATE, Talk, normalized_words, script, speak

NAMESPACE = "bench"
CHUNK_SECONDS = 0.1  # audio sent every 100 ms (Palabra's SDK sends 320 ms)
OUTPUT_RATE = 24_000
AUDIBLE = 300  # mean |sample| of a 10 ms frame that counts as sound
ONSET_GAP_FRAMES = 5  # 50 ms of quiet before a frame makes it an onset
# Goal on 2 cores (issue #21): ear-voice span over a 10-minute talk.
GOAL = {"ear_voice_span_p50_s": 3.0, "ear_voice_span_p95_s": 5.0, "last_minus_first_minute_p50_s": 1.0,
        "wer_points_over_sentence_mode": 2.0}


@dataclass
class Received:
    """What one session's clients got, with arrival times (monotonic)."""

    messages: list[tuple[float, str, dict]] = field(default_factory=list)
    audio_chunks: list[tuple[float, str, float]] = field(default_factory=list)  # (arrival, transcription_id, seconds)
    frames: list[tuple[float, float]] = field(default_factory=list)  # LiveKit listener: (arrival, mean |sample|)

    def of(self, message_type: str) -> list[tuple[float, dict]]:
        return [(at, data) for at, kind, data in self.messages if kind == message_type]


def worker_pid(endpoint: str) -> int | None:
    """The loopback kubelet's worker process serving `endpoint` (ip:port): its env has POD_IP."""
    marker = f"POD_IP={endpoint.split(':')[0]}".encode()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"lingo-worker" in (entry / "cmdline").read_bytes() \
                    and marker in (entry / "environ").read_bytes().split(b"\0"):
                return int(entry.name)
        except OSError:
            continue
    return None


async def create_session(http: aiohttp.ClientSession, headers: dict, source: str, target: str) -> dict:
    async with http.post("/session-storage/sessions", headers=headers, json={"data": {
            "publisher_count": 1, "subscriber_count": 1, "source_language": source,
            "target_languages": [target]}}) as response:
        body = await response.json()
        if response.status != 200:
            raise RuntimeError(f"create failed: {response.status} {body}")
    data = body["data"]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        async with http.get(f"/session-storage/sessions/{data['session_id']}", headers=headers) as response:
            session = (await response.json())["data"]
        if session.get("worker_ready"):
            return {**data, **session}
        await asyncio.sleep(0.5)
    raise RuntimeError("worker not ready in 180 s")


async def collect(ws: aiohttp.ClientWebSocketResponse, received: Received, done: asyncio.Event) -> None:
    async for message in ws:
        if message.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            break
        now = time.monotonic()
        parsed = json.loads(message.data)
        kind, data = parsed["message_type"], parsed.get("data") or {}
        if kind == "output_audio_data":
            samples = len(base64.b64decode(data["data"])) // 2
            received.audio_chunks.append((now, data["transcription_id"], samples / OUTPUT_RATE))
            continue
        received.messages.append((now, kind, data))
        if kind == "eos":
            done.set()


class WorkerUsage:
    """CPU seconds and peak RSS of a worker's process tree while it interprets."""

    def __init__(self, pid: int | None):
        self.pid, self.peak_rss_mb, self._cpu_start = pid, 0.0, 0.0
        self._sampler: asyncio.Task | None = None

    def start(self) -> None:
        if self.pid:
            self._cpu_start = tree_cpu_seconds(self.pid, process_table())
            self._sampler = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            self.peak_rss_mb = max(self.peak_rss_mb, tree_rss_mb(self.pid))
            await asyncio.sleep(5)

    def stop(self, seconds: float) -> dict:
        if not self.pid:
            return {}
        if self._sampler:
            self._sampler.cancel()
        cpu = tree_cpu_seconds(self.pid, process_table()) - self._cpu_start
        return {"cpu_seconds": round(cpu, 1), "cpu_percent_of_a_core": round(100 * cpu / seconds, 1),
                "peak_rss_mb": round(self.peak_rss_mb)}


async def talk_over_websocket(ws: aiohttp.ClientWebSocketResponse, talk: Talk, options: dict) -> float:
    """Palabra's ws mode: set_task, then the talk in real time; returns when the talk started."""
    await ws.send_str(json.dumps({"message_type": "set_task", "data": {
        "pipeline": {"transcription": {"source_language": talk.language},
                     "translations": [{"target_language": options.pop("_target")}]},
        "input_stream": {"content_type": "audio", "source": {"type": "ws", "format": "pcm_s16le",
                                                             "sample_rate": RATE, "channels": 1}},
        "output_stream": {"content_type": "audio", "target": {"type": "ws", "format": "pcm_s16le",
                                                              "sample_rate": OUTPUT_RATE, "channels": 1}}}}))
    if options:
        await ws.send_str(json.dumps({"message_type": "set_task", "data": {"options": options}}))
    await asyncio.sleep(0.5)
    pcm = (np.clip(talk.audio, -1, 1) * 32767).astype("<i2")
    step = int(CHUNK_SECONDS * RATE)
    started = time.monotonic()
    for index, start in enumerate(range(0, len(pcm) + RATE, step)):  # one second of silence after
        await asyncio.sleep(max(0.0, started + index * CHUNK_SECONDS - time.monotonic()))
        chunk = pcm[start:start + step] if start < len(pcm) else np.zeros(step, dtype="<i2")
        await ws.send_str(json.dumps({"message_type": "input_audio_data",
                                      "data": {"data": base64.b64encode(chunk.tobytes()).decode()}}))
    await ws.send_str(json.dumps({"message_type": "eos", "data": {}}))
    return started


async def talk_over_livekit(session: dict, talk: Talk, received: Received, target: str) -> float:
    """A LiveKit microphone track in, a subscriber on the translation track out."""
    listener = rtc.Room()

    async def listen(track: rtc.Track) -> None:
        async for event in rtc.AudioStream(track, sample_rate=16000, num_channels=1):
            received.frames.append((time.monotonic(), float(np.abs(np.frombuffer(event.frame.data, np.int16)).mean())))

    @listener.on("track_subscribed")
    def _on_track(track, publication, _participant):
        if publication.name == track_name(target):
            asyncio.ensure_future(listen(track))

    await listener.connect(session["stream_url"], session["subscriber"][0])
    speaker = rtc.Room()
    await speaker.connect(session["stream_url"], session["publisher"][0])
    source = rtc.AudioSource(RATE, 1, queue_size_ms=100)
    await speaker.local_participant.publish_track(
        rtc.LocalAudioTrack.create_audio_track("microphone", source),
        rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
    await asyncio.sleep(1.5)  # the worker subscribes to the new track
    pcm = (np.clip(np.concatenate([talk.audio, np.zeros(2 * RATE, np.float32)]), -1, 1) * 32767).astype(np.int16)
    frame = RATE // 100
    started = time.monotonic()
    for index, start in enumerate(range(0, len(pcm) - frame + 1, frame)):
        await asyncio.sleep(max(0.0, started + index * 0.01 - time.monotonic()))
        await source.capture_frame(rtc.AudioFrame(pcm[start:start + frame].tobytes(), RATE, 1, frame))
    received.messages.append((time.monotonic(), "_talk_ended", {}))
    await asyncio.sleep(15)  # the last units play out
    await speaker.disconnect()
    await listener.disconnect()
    return started


def units_heard_over_websocket(received: Received, started: float) -> list[HeardUnit]:
    """A real-time player: chunks play in arrival order, each as soon as it came and the one
    before it ended."""
    play_end, heard_start, heard_seconds = 0.0, {}, {}
    for arrival, transcription_id, seconds in sorted(received.audio_chunks):
        begin = max(arrival, play_end)
        play_end = begin + seconds
        heard_start.setdefault(transcription_id, begin - started)
        heard_seconds[transcription_id] = heard_seconds.get(transcription_id, 0.0) + seconds
    return _units(received, heard_start, heard_seconds)


def units_heard_over_livekit(received: Received, started: float, target: str) -> list[HeardUnit]:
    """Each unit's start on the listener's track: the first onset after its translation was sent
    (translated_transcription) and after the unit before it had nearly played; back to back with
    no gap, where the last one ended."""
    audible = [(at, level > AUDIBLE) for at, level in received.frames]
    onsets = [at for i, (at, loud) in enumerate(audible)
              if loud and i >= ONSET_GAP_FRAMES and not any(l for _, l in audible[i - ONSET_GAP_FRAMES:i])]
    translated = {data["transcription"]["transcription_id"]: at for at, data in received.of("translated_transcription")
                  if data["transcription"]["language"] == target}
    seconds = {data["transcription_id"]: data["timings"].get(f"tts_audio_seconds.{target}", 0.0)
               for _, data in received.of("pipeline_timings")}
    dropped = {tid for _, data in received.of("warning") for tid in data.get("transcription_ids", [])}
    heard_start, heard_seconds, previous_end = {}, {}, 0.0
    for _, data in received.of("validated_transcription"):
        transcription_id = data["transcription"]["transcription_id"]
        if transcription_id in dropped or transcription_id not in translated:
            continue
        duration = seconds.get(transcription_id, 0.0)
        earliest = max(translated[transcription_id], previous_end - 0.1)
        onset = next((at for at in onsets if at >= earliest), None)
        begin = onset if onset is not None and onset <= earliest + max(0.5, duration / 2) else earliest
        heard_start[transcription_id], heard_seconds[transcription_id] = begin - started, duration
        previous_end = begin + duration
    return _units(received, heard_start, heard_seconds)


def _units(received: Received, heard_start: dict, heard_seconds: dict) -> list[HeardUnit]:
    translated = {data["transcription"]["transcription_id"]: data["transcription"]["text"]
                  for _, data in received.of("translated_transcription")}
    return [HeardUnit(tid := data["transcription"]["transcription_id"], data["transcription"]["text"],
                      translated.get(tid, ""), heard_start.get(tid), heard_seconds.get(tid, 0.0))
            for _, data in received.of("validated_transcription")]


def backlog(received: Received, target: str) -> dict:
    timings = [data["timings"] for _, data in received.of("pipeline_timings")]
    tempos = [t[f"tempo.{target}"] for t in timings if f"tempo.{target}" in t]
    queues = [t[f"queue_ms.{target}"] for t in timings if f"queue_ms.{target}" in t]
    dropped_ms = sum(data.get("dropped_ms", 0) for _, data in received.of("warning"))
    return {"tempo_mean": round(statistics.mean(tempos), 3) if tempos else None,
            "tempo_max": max(tempos, default=None),
            "units_at_max_tempo": sum(t >= 1.45 for t in tempos),
            "queue_ms_p50": round(statistics.median(queues)) if queues else None,
            "queue_ms_max": max(queues, default=None), "dropped_ms": dropped_ms,
            "commit_lag_ms_p50": round(statistics.median([t["commit_lag_ms"] for t in timings if "commit_lag_ms" in t]))
            if timings else None}


async def worker_loops(http: aiohttp.ClientSession, endpoint: str) -> float | None:
    try:
        async with http.get(f"http://{endpoint}/metrics") as response:
            text = await response.text()
    except aiohttp.ClientError:
        return None
    return next((float(line.split()[-1]) for line in text.splitlines()
                 if line.startswith("lingo_worker_recognition_loops_total ")), None)


async def one_talk(facade: str, headers: dict, talk: Talk, target: str, transport: str, options: dict,
                   worker_endpoint) -> dict:
    async with aiohttp.ClientSession(base_url=facade) as http:
        session = await create_session(http, headers, talk.language, target)
        endpoint = worker_endpoint(session["session_id"])
        usage = WorkerUsage(worker_pid(endpoint) if endpoint else None)
        received, done = Received(), asyncio.Event()
        # The publisher's token: it sends the audio in ws mode, and task options are a publisher's to set.
        ws = await http.ws_connect(session["control_url"], params={"token": session["publisher"][0]}, max_msg_size=0)
        collector = asyncio.create_task(collect(ws, received, done))
        usage.start()
        if transport == "ws":
            started = await talk_over_websocket(ws, talk, {**options, "_target": target})
            try:
                await asyncio.wait_for(done.wait(), timeout=60)
            except TimeoutError:
                pass
        else:
            if options:
                await ws.send_str(json.dumps({"message_type": "set_task", "data": {"options": options}}))
            started = await talk_over_livekit(session, talk, received, target)
        cpu = usage.stop(time.monotonic() - started)
        loops = await worker_loops(http, endpoint) if endpoint else None
        await ws.close()
        collector.cancel()
        async with http.delete(f"/session-storage/sessions/{session['session_id']}", headers=headers):
            pass
    units = units_heard_over_websocket(received, started) if transport == "ws" \
        else units_heard_over_livekit(received, started, target)
    return {"units": units, "received": received, "worker": {**cpu, "recognition_loops": loops},
            "backlog": backlog(received, target)}


def sentence_mode(talks: list[Talk], target: str, recognize: bool = True) -> dict[str, dict]:
    """Per language: each sentence recognized alone from its exact audio (WER; unless not
    `recognize`), and the script translated sentence by sentence (the reference for chrF/BLEU)."""
    import jiwer

    from lingo_worker.engines.registry import build_engines

    engines = build_engines("cpu", None)
    out = {}
    for talk in talks:
        reference = [engines.translator.translate(sentence, talk.language, target) for sentence in talk.sentences]
        out[talk.language] = {"reference_translation": reference}
        if recognize:
            recognizer = engines.recognizer_for(talk.language)
            heard = [recognizer.transcribe(talk.audio[int((s - 0.05) * RATE):int((e + 0.1) * RATE)], talk.language)
                     for s, e in talk.sentence_spans]
            out[talk.language].update(recognizer=recognizer.name, transcript=" ".join(heard), wer=round(jiwer.wer(
                " ".join(normalized_words(" ".join(talk.sentences))), " ".join(normalized_words(" ".join(heard)))), 4))
    engines.translator.close()
    return out


def rescore(args: argparse.Namespace) -> None:
    """Scores of a saved run computed again from the units it heard (after a scorer changed);
    the sentence-mode WER is kept from the run, and its transcript recognized again if the run
    did not save it."""
    path = RESULTS_DIR / f"{args.name}.json"
    saved = json.loads(path.read_text())
    sessions = [session for run in saved["runs"] for session in run["sessions"]]
    languages = sorted({session["language"] for session in sessions})
    talks = {language: speak(language, script(language, args.sentences or None)) for language in languages}
    missing = any("sentence_mode_transcript" not in session for session in sessions)
    references = sentence_mode(list(talks.values()), saved["target"], recognize=missing)
    for run in saved["runs"]:
        for session in run["sessions"]:
            language = session["language"]
            talk, units = talks[language], [HeardUnit(**unit) for unit in session["units"]]
            session.setdefault("sentence_mode_transcript", references[language].get("transcript", ""))
            session["scores"] = score(talk, units, references[language]["reference_translation"],
                                      session["sentence_mode_transcript"])
            session["evs_points"] = [(round(at, 2), round(span, 3)) for at, span in ear_voice_spans(talk, units)]
    args.target, args.plan = saved["target"], saved["plan"]
    print(write_results(args, saved["options"], saved["runs"], talks, saved))


def plot(runs: list[dict], talks: dict[str, Talk], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (lag, queue) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for run in runs:
        for session in run["sessions"]:
            spans = session["evs_points"]
            label = f"{run['label']}: {session['language']}"
            lag.plot([at / 60 for at, _ in spans], [span for _, span in spans], ".", markersize=2, label=label)
            queue.plot([at / 60 for at, _ in session["queue_points"]], [q / 1000 for _, q in session["queue_points"]],
                       "-", linewidth=0.8, label=label)
    lag.axhline(GOAL["ear_voice_span_p50_s"], color="grey", linestyle="--", linewidth=0.8)
    lag.set_ylabel("ear-voice span (s)")
    lag.set_title("Simultaneous interpretation of 10-minute talks: lag of every word")
    lag.legend(fontsize=7, markerscale=4)
    queue.set_ylabel("speech backlog before a unit (s)")
    queue.set_xlabel("talk time (minutes)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def markdown(results: dict) -> str:
    lines = [f"# Simultaneous interpretation of talks ({results['date']}, {results['machine']['cpus']} cores)", "",
             "| run | talk | EVS p50 / p95 (s) | first / last minute p50 (s) | StartOffset / EndOffset (s) | "
             "AL / LAAL (s) | WER (sentence mode) | chrF / BLEU | units (dropped) | tempo mean / max | "
             "backlog p50 / max (s) | cut words | loops | worker CPU / RSS |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in results["runs"]:
        for s in run["sessions"]:
            sc, b, w = s["scores"], s["backlog"], s["worker"]
            evs, sim = sc["ear_voice_span_s"], sc["simuleval"]
            lines.append(
                f"| {run['label']} | {s['language']}→{results['target']} {sc['talk_seconds'] / 60:.1f} min | "
                f"**{evs['p50']:.2f} / {evs['p95']:.2f}** | {evs['first_minute_p50']:.2f} / {evs['last_minute_p50']:.2f} | "
                f"{sim.get('start_offset_ms', 0) / 1000:.2f} / {sim.get('end_offset_ms', 0) / 1000:.2f} | "
                f"{sim.get('al_ms', 0) / 1000:.2f} / {sim.get('laal_ms', 0) / 1000:.2f} | "
                f"{sc['wer'] * 100:.1f}% ({s['sentence_mode_wer'] * 100:.1f}%) | {sc['chrf']} / {sc['bleu']} | "
                f"{sc['units']} ({sc['units_dropped']}) | {b['tempo_mean']} / {b['tempo_max']} | "
                f"{(b['queue_ms_p50'] or 0) / 1000:.2f} / {(b['queue_ms_max'] or 0) / 1000:.2f} | "
                f"{_cuts(sc)} | {sc['loops']} (guard: {_count(w.get('recognition_loops'))}) | "
                f"{w.get('cpu_percent_of_a_core', '?')}% / {w.get('peak_rss_mb', '?')} MB |")
    lines += ["", f"Goal: {json.dumps(GOAL)}; met: {json.dumps(results['goal_met'])}", ""]
    if results.get("options"):
        lines += [f"Task options of every session: {json.dumps(results['options'])}", ""]
    lines += [provenance_line(results), ""]
    return "\n".join(lines)


def _cuts(scores: dict) -> str:
    split = scores.get("recognizer_split_words", 0)
    return f"{scores['cut_words']}" + (f" ({split} split by the recognizer)" if split else "")


def _count(value) -> str:
    return "?" if value is None else f"{value:.0f}"


def goal_met(session: dict) -> bool:
    evs = session["scores"]["ear_voice_span_s"]
    return bool(evs["p50"] <= GOAL["ear_voice_span_p50_s"] and evs["p95"] <= GOAL["ear_voice_span_p95_s"]
            and abs(evs["last_minute_p50"] - evs["first_minute_p50"]) <= GOAL["last_minus_first_minute_p50_s"]
            and session["scores"]["cut_words"] == 0 and session["scores"]["loops"] == 0
            and (session["scores"]["wer"] - session["sentence_mode_wer"]) * 100
            <= GOAL["wer_points_over_sentence_mode"])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.simultaneous", description=__doc__.split("\n")[0])
    parser.add_argument("--plan", default="en;ca;it;livekit:en;en+ca+it",
                        help="runs separated by ';': languages joined by '+' talk at once; 'livekit:' for tracks")
    parser.add_argument("--target", default="es")
    parser.add_argument("--sentences", type=int, default=0, help="only the first N sentences of each talk")
    parser.add_argument("--options", default="{}", help="task options for every session (JSON)")
    parser.add_argument("--name", default="simultaneous", help="results file name in bench/results/")
    parser.add_argument("--rescore", action="store_true", help="score the saved results again; run nothing")
    parser.add_argument("--append", action="store_true", help="add the runs to the saved results of --name")
    args = parser.parse_args()
    if args.rescore:
        rescore(args)
        return
    options = json.loads(args.options)
    plan = [(item.split(":")[0] if ":" in item else "ws", item.split(":")[-1].split("+"))
            for item in args.plan.split(";") if item]
    languages = sorted({language for _, group in plan for language in group})
    talks = {language: speak(language, script(language, args.sentences or None)) for language in languages}
    print(f"talks: {', '.join(f'{l} {t.seconds / 60:.1f} min' for l, t in talks.items())}; "
          "recognizing each sentence alone (sentence mode) ...", flush=True)
    baseline = sentence_mode(list(talks.values()), args.target)

    saved = RESULTS_DIR / f"{args.name}.json"
    runs = json.loads(saved.read_text())["runs"] if args.append and saved.exists() else []
    with loopback_stack(NAMESPACE, with_kubelet=True) as (cluster, facade):
        secret = register_client(cluster, NAMESPACE, "bench", max_sessions=10)
        # What the chart installs by default: a pool of one idle en->es worker.
        cluster.create(f"/apis/{r.API_VERSION}/namespaces/{NAMESPACE}/{r.POOL_PLURAL}", {
            "apiVersion": r.API_VERSION, "kind": r.POOL_KIND, "metadata": {"name": "default"},
            "spec": {"minReady": 1, "maxReady": 20, "sourceLanguage": "en", "targetLanguages": ["es"]}})
        headers = {"ClientID": "bench", "ClientSecret": secret}
        for transport, group in plan:
            label = f"{transport} {'+'.join(group)}" if len(group) > 1 else transport
            repeats = sum(1 for run in runs if run["label"].split(" #")[0] == label)
            label += f" #{repeats + 1}" if repeats else ""  # the same run again ("it;it"): its own row
            print(f"run {label}: {', '.join(group)} ...", flush=True)

            def worker_endpoint(name: str) -> str:  # not in the facade's answers: from the resource
                path = f"/apis/{r.API_VERSION}/namespaces/{NAMESPACE}/{r.SESSION_PLURAL}/{name}"
                return (cluster.api_request(path).get("status") or {}).get("workerEndpoint", "")

            async def run_group():
                return await asyncio.gather(*(one_talk(facade, headers, talks[language], args.target, transport,
                                                       dict(options), worker_endpoint) for language in group))

            outcomes = asyncio.run(run_group())
            sessions = []
            for language, outcome in zip(group, outcomes):
                talk = talks[language]
                scores = score(talk, outcome["units"], baseline[language]["reference_translation"],
                               baseline[language]["transcript"])
                queue_points = [(unit_start, t[f"queue_ms.{args.target}"])
                                for unit_start, t in _queue_points(outcome, args.target)]
                sessions.append({
                    "language": language, "scores": scores, "backlog": outcome["backlog"],
                    "worker": outcome["worker"], "sentence_mode_wer": baseline[language]["wer"],
                    "sentence_mode_transcript": baseline[language]["transcript"],
                    "evs_points": [(round(at, 2), round(span, 3)) for at, span in
                                   ear_voice_spans(talk, outcome["units"])],
                    "queue_points": queue_points,
                    "units": [unit.__dict__ for unit in outcome["units"]],
                })
                print(f"  {language}: EVS p50 {scores['ear_voice_span_s']['p50']} s, "
                      f"p95 {scores['ear_voice_span_s']['p95']} s, WER {scores['wer']}", flush=True)
            runs.append({"label": label, "transport": transport, "sessions": sessions})
            text = write_results(args, options, runs, talks)  # after every run: a late failure loses none
    print(text)
    print(f"results in {RESULTS_DIR}/{args.name}.{{json,md,png}}")


def write_results(args: argparse.Namespace, options: dict, runs: list[dict], talks: dict[str, Talk],
                  saved: dict | None = None) -> str:
    """Writes JSON, markdown and PNG; `saved`: the run being rescored (its date and machine are kept)."""
    saved = saved or provenance()
    results = {"benchmark": "simultaneous", "date": saved["date"], "machine": saved["machine"],
               "commit": saved.get("commit", "not recorded"),
               "target": args.target, "options": options, "plan": args.plan, "goal": GOAL, "runs": runs,
               "goal_met": {f"{run['label']}: {s['language']}": goal_met(s) for run in runs for s in run["sessions"]}}
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{args.name}.json").write_text(json.dumps(results, indent=1) + "\n")
    text = markdown(results)
    (RESULTS_DIR / f"{args.name}.md").write_text(text)
    plot(runs, talks, RESULTS_DIR / f"{args.name}.png")
    return text


def _queue_points(outcome: dict, target: str) -> list[tuple[float, dict]]:
    """(talk seconds of the unit's start, its pipeline_timings), for the backlog plot."""
    starts = {unit.transcription_id: unit.heard_start for unit in outcome["units"]}
    return [(starts.get(data["transcription_id"]) or 0.0, data["timings"])
            for _, data in outcome["received"].of("pipeline_timings")
            if f"queue_ms.{target}" in data["timings"]]


if __name__ == "__main__":
    run_and_exit(main)
