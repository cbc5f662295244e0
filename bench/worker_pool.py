"""How soon a session's translator is in the room: with a warm WorkerPool, and without (cold).

On the loopback stack with real worker processes, sessions are created one after another
through the facade (`--interval` apart, each deleted once its translator has joined). For
each: POST → 200, POST → the translator participant active in the LiveKit room (polled on
LiveKit's API every 10 ms), and POST → `worker_ready` in the facade's GET (what a client sees).
The cold phase runs first with no pool; then a pool (`--min-ready`) is created and filled and
the same sessions run again.

Run: python -m bench.worker_pool [--sessions 20] [--interval 3] [--min-ready 2]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp
from livekit import api as livekit_api

from lingo_api import resources as r
from lingo_loopback.stack import register_client

from .common import loopback_stack, machine, summary, write_results

NAMESPACE = "bench"
TRANSLATOR_PREFIX = "palabra_translator"
# Goal from the issue: POST -> translator's media connection up, p99, from a warm pool.
TARGET_P99_MS = 300


async def translator_active(lk: livekit_api.LiveKitAPI, room: str) -> bool:
    listing = await lk.room.list_participants(livekit_api.ListParticipantsRequest(room=room))
    return any(p.identity.startswith(TRANSLATOR_PREFIX) and p.state == livekit_api.ParticipantInfo.State.ACTIVE
               for p in listing.participants)


async def one_session(http: aiohttp.ClientSession, headers: dict, lk: livekit_api.LiveKitAPI) -> dict:
    started = time.perf_counter()
    async with http.post("/session-storage/sessions", headers=headers,
                         json={"data": {"publisher_count": 1, "subscriber_count": 1}}) as response:
        data = (await response.json())["data"]
    posted = time.perf_counter()
    in_room = ready = None
    while in_room is None or ready is None:
        now = time.perf_counter()
        if now - started > 60:
            break
        if in_room is None and await translator_active(lk, data["room_name"]):
            in_room = time.perf_counter()
        if ready is None:
            async with http.get(f"/session-storage/sessions/{data['session_id']}", headers=headers) as response:
                if (await response.json())["data"]["worker_ready"]:
                    ready = time.perf_counter()
        await asyncio.sleep(0.01)
    async with http.delete(f"/session-storage/sessions/{data['session_id']}", headers=headers):
        pass
    ms = lambda t: round((t - started) * 1000, 1) if t else None  # noqa: E731
    return {"post_ms": ms(posted), "in_room_ms": ms(in_room), "worker_ready_ms": ms(ready)}


async def run(facade: str, secret: str, livekit, kube_create_pool, sessions: int, interval: float) -> dict:
    headers = {"ClientID": "bench", "ClientSecret": secret}
    results = {}
    async with aiohttp.ClientSession(base_url=facade) as http, \
            livekit_api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as lk:
        for mode in ("cold", "pool"):
            if mode == "pool":
                await kube_create_pool()
            rows = []
            for _ in range(sessions):
                rows.append(await one_session(http, headers, lk))
                print(mode, rows[-1], flush=True)
                await asyncio.sleep(interval)
            results[mode] = rows
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_pool", description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--interval", type=float, default=3.0)
    parser.add_argument("--min-ready", type=int, default=2)
    args = parser.parse_args()

    with loopback_stack(NAMESPACE, with_kubelet=True) as (cluster, facade):
        secret = register_client(cluster, NAMESPACE, "bench", max_sessions=10)

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

        raw = asyncio.run(run(facade, secret, cluster.livekit, create_pool, args.sessions, args.interval))

    stats = {mode: {key: summary([row[key] for row in rows if row[key] is not None])
                    for key in ("post_ms", "in_room_ms", "worker_ready_ms")} for mode, rows in raw.items()}
    results = {"benchmark": "worker_pool", "machine": machine(), "sessions": args.sessions,
               "interval_seconds": args.interval, "min_ready": args.min_ready, "stats": stats, "raw": raw,
               "target_ms": {"in_room_p99_from_pool": TARGET_P99_MS}}
    rows = "\n".join(
        f"| {mode} | {s['post_ms']['p50']} / {s['post_ms']['p99']} | {s['in_room_ms']['p50']} / {s['in_room_ms']['p99']} "
        f"| {s['worker_ready_ms']['p50']} / {s['worker_ready_ms']['p99']} | {s['in_room_ms']['n']}/{args.sessions} |"
        for mode, s in stats.items())
    markdown = f"""# Translator in the room: warm pool against cold start ({machine()['cpus']} CPUs)

{args.sessions} sessions per mode, one every {args.interval} s; pool minReady {args.min_ready}.

| mode | POST → 200 p50 / p99 ms | POST → translator active in the room p50 / p99 ms | POST → worker_ready (facade GET) p50 / p99 ms | joined |
|---|---|---|---|---|
{rows}

Goal: translator in the room p99 < {TARGET_P99_MS} ms from a warm pool.
"""
    write_results("worker_pool", results, markdown,
                  {f"{mode}: POST → translator in room": [row["in_room_ms"] for row in raw[mode] if row["in_room_ms"]]
                   for mode in raw}, "milliseconds after POST")


if __name__ == "__main__":
    main()
