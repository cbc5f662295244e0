"""How soon a session's translator is in the room: with a warm WorkerPool, without (cold), and
LiveKit Agents' explicit dispatch to prewarmed processes, side by side on one livekit-server.

On the loopback stack with real worker processes, sessions are created one after another
through the facade (`--interval` apart, each deleted once its translator has joined). For
each: POST → 200, POST → the translator participant active in the LiveKit room (polled on
LiveKit's API every 10 ms), and POST → `worker_ready` in the facade's GET (what a client sees).
The cold phase runs first with no pool; then a pool (`--min-ready`) is created and filled and
the same sessions run again. Last, where `.venv-agents` exists (`make bench-agents`), a minimal
LiveKit Agents worker (bench/agents_worker.py, `--min-ready` prewarmed processes) is started
against the same server and each trial creates a room, dispatches the agent to it and waits for
the agent to be active: first request → agent in the room.

Run: python -m bench.worker_pool [--sessions 20] [--interval 3] [--min-ready 2]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import secrets
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp
from livekit import api as livekit_api

import numpy as np
from kubernetes_asyncio import client as kube_client, config as kube_config, watch as kube_watch
from livekit import rtc

from lingo_api import resources as r
from lingo_api.livekit_sdk import run_and_exit
from lingo_loopback.stack import register_client
from lingo_worker.audio_output import track_name

from . import speech
from .common import (loopback_stack, machine, process_table, summary, tree_cpu_seconds, tree_rss_mb, worker_pids,
                     write_results)
from .worker_latency import Listener

NAMESPACE = "bench"
TRANSLATOR_PREFIX = "palabra_translator"
AGENTS_PYTHON = Path(__file__).resolve().parent.parent / ".venv-agents" / "bin" / "python"
AGENTS_WORKER = Path(__file__).resolve().parent / "agents_worker.py"
# Goal from the issue: POST -> translator's media connection up, p99, from a warm pool.
TARGET_P99_MS = 300
SENTENCE = "Good morning everyone, the meeting starts at ten."


async def translator_active(lk: livekit_api.LiveKitAPI, room: str, prefix: str = TRANSLATOR_PREFIX) -> bool:
    listing = await lk.room.list_participants(livekit_api.ListParticipantsRequest(room=room))
    return any(p.identity.startswith(prefix) and p.state == livekit_api.ParticipantInfo.State.ACTIVE
               for p in listing.participants)


def idle_worker_usage(seconds: float = 5.0) -> dict:
    """RSS and CPU of the idle pooled workers (processes of the loopback kubelet) with their engine
    processes, from /proc."""
    pids, before = worker_pids(b"LINGO_POOL="), process_table()
    time.sleep(seconds)
    after = process_table()
    pids = [pid for pid in pids if pid in after]
    return {"workers": len(pids), "rss_mb": [round(tree_rss_mb(pid)) for pid in pids],
            "cpu_percent": [round((tree_cpu_seconds(pid, after) - tree_cpu_seconds(pid, before)) / seconds * 100, 1)
                            for pid in pids],
            # what each has used so far: its start, engine load and warm-up
            "cpu_seconds_to_ready": [round(tree_cpu_seconds(pid, before), 2) for pid in pids]}


async def one_dispatch(lk: livekit_api.LiveKitAPI) -> dict:
    """LiveKit Agents: create a room, dispatch the agent to it, wait until it is active there."""
    room = f"agents-{secrets.token_hex(4)}"
    started = time.perf_counter()
    await lk.room.create_room(livekit_api.CreateRoomRequest(name=room, empty_timeout=60))
    await lk.agent_dispatch.create_dispatch(livekit_api.CreateAgentDispatchRequest(agent_name="bench-agent", room=room))
    posted = time.perf_counter()
    in_room = None
    while in_room is None and time.perf_counter() - started < 30:
        if await translator_active(lk, room, prefix="agent-"):
            in_room = time.perf_counter()
        else:
            await asyncio.sleep(0.01)
    await lk.room.delete_room(livekit_api.DeleteRoomRequest(room=room))
    ms = lambda t: round((t - started) * 1000, 1) if t else None  # noqa: E731
    return {"post_ms": ms(posted), "in_room_ms": ms(in_room), "worker_ready_ms": None, "first_translation_ms": None,
            "join_to_worker_ready_ms": None}


class FirstSeen:
    """Notes when something was first seen per key, by a background task of the subclass's."""

    def __init__(self, follow):
        self.seen_at: dict[str, float] = {}
        self._task = asyncio.create_task(follow)

    async def when(self, key: str, timeout: float = 60) -> float | None:
        deadline = time.perf_counter() + timeout
        while key not in self.seen_at and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        return self.seen_at.get(key)

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class TranslatorWatch(FirstSeen):
    """Polls LiveKit (every ~10 ms) and notes when a translator first became active in each room,
    so a session's join is timed from its POST even when the POST answers later."""

    def __init__(self, lk: livekit_api.LiveKitAPI):
        self.lk = lk
        super().__init__(self._poll())

    async def _poll(self) -> None:
        while True:
            try:
                listing = await self.lk.room.list_rooms(livekit_api.ListRoomsRequest())
            except Exception:  # LiveKit busy: try again
                await asyncio.sleep(0.05)
                continue
            pending = [room.name for room in listing.rooms if room.name not in self.seen_at]
            found = await asyncio.gather(*(translator_active(self.lk, name) for name in pending),
                                         return_exceptions=True)
            now = time.perf_counter()
            for name, active in zip(pending, found):
                if active is True:
                    self.seen_at[name] = now
            await asyncio.sleep(0.01)


class WorkerReadyWatch(FirstSeen):
    """Watches the namespace's StreamingSessions and notes when each one's WorkerReady condition
    first shows True in the API server (what `kubectl wait` and the facade see)."""

    def __init__(self, kubeconfig: Path):
        super().__init__(self._follow(kubeconfig))

    async def _follow(self, kubeconfig: Path) -> None:
        configuration = kube_client.Configuration()
        await kube_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        async with kube_client.ApiClient(configuration) as api:
            custom = kube_client.CustomObjectsApi(api)
            while True:
                stream = kube_watch.Watch()
                async for event in stream.stream(custom.list_namespaced_custom_object, r.GROUP, r.VERSION, NAMESPACE,
                                                 r.SESSION_PLURAL, timeout_seconds=300):
                    session = event["object"]
                    name = session["metadata"]["name"]
                    if name not in self.seen_at and any(
                            c["type"] == r.Condition.WORKER_READY and c["status"] == "True"
                            for c in (session.get("status") or {}).get("conditions") or []):
                        self.seen_at[name] = time.perf_counter()


async def first_translation(data: dict, started: float) -> float | None:
    """A publisher who starts speaking as soon as the POST answers, repeating one English sentence,
    and a subscriber: when the first translated audio reaches the subscriber."""
    listener, listening, speaker = Listener(), rtc.Room(), rtc.Room()

    @listening.on("track_subscribed")
    def _on_track(track, publication, _participant):
        if publication.name == track_name("es"):
            asyncio.ensure_future(listener.follow(track))

    samples, rate = spoken_sentence()
    try:
        await asyncio.gather(listening.connect(data["stream_url"], data["subscriber"][0]),
                             speaker.connect(data["stream_url"], data["publisher"][0]))
        source = rtc.AudioSource(rate, 1, queue_size_ms=100)
        await speaker.local_participant.publish_track(
            rtc.LocalAudioTrack.create_audio_track("microphone", source),
            rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        frame = rate // 100
        clip = np.concatenate([samples, np.zeros(rate, dtype=np.int16)])  # a second of silence ends it
        while not listener.onsets and time.perf_counter() - started < 30:
            for offset in range(0, len(clip) - frame + 1, frame):
                await source.capture_frame(rtc.AudioFrame(clip[offset:offset + frame].tobytes(), rate, 1, frame))
                if listener.onsets:
                    break
        # Listener keeps monotonic times; perf_counter and monotonic share a clock on Linux.
        return listener.onsets[0] if listener.onsets else None
    finally:
        await asyncio.gather(speaker.disconnect(), listening.disconnect())


async def one_session(http: aiohttp.ClientSession, headers: dict, watch: TranslatorWatch,
                      ready_watch: WorkerReadyWatch, with_speech: bool, read_session) -> dict:
    started = time.perf_counter()
    async with http.post("/session-storage/sessions", headers=headers,
                         json={"data": {"publisher_count": 1, "subscriber_count": 1}}) as response:
        answer = await response.json()
    posted = time.perf_counter()
    if not answer.get("ok"):  # recorded, not fatal: an overloaded machine answers 503 in time
        return {"post_ms": None, "in_room_ms": None, "worker_ready_ms": None, "first_translation_ms": None,
                "join_to_worker_ready_ms": None, "worker": None,
                "error": f"{response.status} {answer['error']['code']}"}
    data = answer["data"]
    heard = asyncio.create_task(first_translation(data, started)) if with_speech else None
    ready = None
    while ready is None and time.perf_counter() - started < 60:
        async with http.get(f"/session-storage/sessions/{data['session_id']}", headers=headers) as response:
            if (await response.json())["data"]["worker_ready"]:
                ready = time.perf_counter()
        await asyncio.sleep(0.01)
    in_room = await watch.when(data["room_name"], timeout=max(0.0, 60 - (time.perf_counter() - started)))
    ready_in_api = await ready_watch.when(data["session_id"], timeout=max(0.0, 60 - (time.perf_counter() - started)))
    translated = await heard if heard else None
    worker = await asyncio.to_thread(read_session, data["session_id"])
    async with http.delete(f"/session-storage/sessions/{data['session_id']}", headers=headers):
        pass
    ms = lambda t: round((t - started) * 1000, 1) if t else None  # noqa: E731
    after_join = round((ready_in_api - in_room) * 1000, 1) if (ready_in_api and in_room) else None
    return {"post_ms": ms(posted), "in_room_ms": ms(in_room), "worker_ready_ms": ms(ready),
            "first_translation_ms": ms(translated), "join_to_worker_ready_ms": after_join, "worker": worker}


async def run(facade: str, secret: str, livekit, kubeconfig: Path, kube_create_pool, read_session, args) -> dict:
    headers = {"ClientID": "bench", "ClientSecret": secret}
    results = {}
    modes = args.modes.split(",")
    async with aiohttp.ClientSession(base_url=facade) as http, \
            livekit_api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as lk:
        watch, ready_watch = TranslatorWatch(lk), WorkerReadyWatch(kubeconfig)

        async def session() -> dict:
            row = await one_session(http, headers, watch, ready_watch, args.speech, read_session)
            print(mode, row, flush=True)
            return row

        for mode in [m for m in ("cold", "pool") if m in modes]:
            if mode == "pool":
                await kube_create_pool()
                await asyncio.sleep(5)  # let the freshly loaded workers settle
                results["idle_workers"] = await asyncio.to_thread(idle_worker_usage)
            if args.rate:  # sessions started on a schedule, overlapping as they may
                pending = []
                for _ in range(args.sessions):
                    pending.append(asyncio.create_task(session()))
                    await asyncio.sleep(60 / args.rate)
                results[mode] = list(await asyncio.gather(*pending))
                await asyncio.sleep(args.interval)
            else:
                results[mode] = []
                for _ in range(args.sessions):
                    results[mode].append(await session())
                    await asyncio.sleep(args.interval)
        await watch.close()
        await ready_watch.close()
        if AGENTS_PYTHON.exists() and "livekit-agents" in modes:
            results["livekit-agents"] = await run_agents(lk, livekit, args.sessions, args.interval, args.min_ready)
    return results


async def run_agents(lk, livekit, sessions: int, interval: float, idle_processes: int) -> list[dict]:
    env = {**os.environ, "LIVEKIT_URL": livekit.url, "LIVEKIT_API_KEY": livekit.api_key,
           "LIVEKIT_API_SECRET": livekit.api_secret, "BENCH_IDLE_PROCESSES": str(idle_processes)}
    with tempfile.TemporaryDirectory() as workdir, open(Path(workdir) / "agents.log", "wb") as log:
        worker = subprocess.Popen([str(AGENTS_PYTHON), str(AGENTS_WORKER)], env=env, cwd=workdir, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            await asyncio.sleep(8)  # registration and the prewarmed processes
            rows = []
            for _ in range(sessions):
                rows.append(await one_dispatch(lk))
                print("livekit-agents", rows[-1], flush=True)
                await asyncio.sleep(interval)
            return rows
        finally:
            os.killpg(worker.pid, 15)
            worker.wait(timeout=20)


@functools.cache
def spoken_sentence():
    return speech.speak(SENTENCE, "en")


def how_it_got_its_worker(session: dict) -> str:
    condition = next((c for c in (session.get("status") or {}).get("conditions") or []
                      if c["type"] == r.Condition.WORKER_READY), {})
    return "claimed" if condition.get("reason") == "WorkerClaimed" else "cold"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_pool", description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between sessions run one at a time")
    parser.add_argument("--rate", type=float, default=0,
                        help="sessions per minute, started on that schedule whether or not earlier ones are done")
    parser.add_argument("--min-ready", type=int, default=2)
    parser.add_argument("--speech", action="store_true",
                        help="a publisher speaks from the POST on; time POST -> first translated audio too")
    parser.add_argument("--modes", default="cold,pool,livekit-agents",
                        help="which of cold, pool, livekit-agents to run (comma-separated)")
    parser.add_argument("--name", default="worker_pool", help="results file name in bench/results/")
    args = parser.parse_args()

    if args.speech:
        spoken_sentence()  # synthesized before the clock runs: it would block the event loop
    with loopback_stack(NAMESPACE, with_kubelet=True) as (cluster, facade):
        secret = register_client(cluster, NAMESPACE, "bench", max_sessions=max(10, args.sessions))

        async def create_pool():
            cluster.create(f"/apis/{r.API_VERSION}/namespaces/{NAMESPACE}/{r.POOL_PLURAL}", {
                "apiVersion": r.API_VERSION, "kind": r.POOL_KIND, "metadata": {"name": "bench"},
                "spec": {"minReady": args.min_ready}})
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                pool = cluster.api_request(f"/apis/{r.API_VERSION}/namespaces/{NAMESPACE}/{r.POOL_PLURAL}/bench")
                if (pool.get("status") or {}).get("ready", 0) >= args.min_ready:
                    return
                await asyncio.sleep(0.5)
            raise RuntimeError("the pool did not fill in 120 s")

        def read_session(name: str) -> str:
            return how_it_got_its_worker(cluster.api_request(
                f"/apis/{r.API_VERSION}/namespaces/{NAMESPACE}/{r.SESSION_PLURAL}/{name}"))

        raw = asyncio.run(run(facade, secret, cluster.livekit, cluster.kubeconfig, create_pool, read_session, args))

    idle = raw.pop("idle_workers", {"rss_mb": [], "cpu_percent": [], "cpu_seconds_to_ready": []})
    keys = ("post_ms", "in_room_ms", "worker_ready_ms", "first_translation_ms", "join_to_worker_ready_ms")
    stats = {mode: {key: summary([row[key] for row in rows if row[key] is not None]) for key in keys}
             for mode, rows in raw.items()}
    for mode, rows in raw.items():
        stats[mode]["claimed"] = sum(row.get("worker") == "claimed" for row in rows)
        stats[mode]["errors"] = sorted(row["error"] for row in rows if row.get("error"))
    results = {"benchmark": "worker_pool", "machine": machine(), "sessions": args.sessions,
               "interval_seconds": args.interval, "rate_per_minute": args.rate, "min_ready": args.min_ready,
               "stats": stats, "raw": raw, "idle_workers": idle,
               "target_ms": {"in_room_p99_from_pool": TARGET_P99_MS}}

    def cell(s: dict) -> str:
        return f"{s['p50']} / {s['p99']}" if s["n"] else "–"

    rows = "\n".join(
        f"| {mode} | {cell(s['post_ms'])} | {cell(s['in_room_ms'])} | {cell(s['worker_ready_ms'])} "
        f"| {cell(s['first_translation_ms'])} | {cell(s['join_to_worker_ready_ms'])} | {s['in_room_ms']['n']}/{args.sessions} "
        f"| {s['claimed'] if mode != 'livekit-agents' else '–'} | {', '.join(s['errors']) or 'none'} |"
        for mode, s in stats.items())
    pace = f"{args.rate:g} per minute (overlapping)" if args.rate else f"one every {args.interval} s"
    markdown = f"""# Translator in the room: warm pool against cold start ({machine()['cpus']} CPUs)

{args.sessions} sessions per mode, {pace}; pool minReady {args.min_ready}.

| mode | POST → 200 p50 / p99 ms | POST → translator active in the room p50 / p99 ms | POST → worker_ready (facade GET) p50 / p99 ms | POST → first translated audio p50 / p99 ms | translator active → WorkerReady in the API p50 / p99 ms | joined | from the pool | errors |
|---|---|---|---|---|---|---|---|---|
{rows}

Idle pooled workers (en→es preloaded): RSS {idle['rss_mb']} MB, CPU {idle['cpu_percent']} % of a core,
CPU time spent from start to ready {idle['cpu_seconds_to_ready']} s.

Goal: translator in the room p99 < {TARGET_P99_MS} ms from a warm pool. "In the room" is watched on
LiveKit's API from the moment of the POST. For livekit-agents the "POST" is creating the room plus the
dispatch request, and "in the room" is the agent active there.
"""
    write_results(args.name, results, markdown,
                  {f"{mode}: POST → translator in room": [row["in_room_ms"] for row in raw[mode] if row["in_room_ms"]]
                   for mode in raw}, "milliseconds after POST")


if __name__ == "__main__":
    run_and_exit(main)
