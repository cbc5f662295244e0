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
import os
import secrets
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp
from livekit import api as livekit_api

from lingo_api import resources as r
from lingo_loopback.stack import register_client

from .common import loopback_stack, machine, summary, write_results

NAMESPACE = "bench"
TRANSLATOR_PREFIX = "palabra_translator"
AGENTS_PYTHON = Path(__file__).resolve().parent.parent / ".venv-agents" / "bin" / "python"
AGENTS_WORKER = Path(__file__).resolve().parent / "agents_worker.py"
# Goal from the issue: POST -> translator's media connection up, p99, from a warm pool.
TARGET_P99_MS = 300


async def translator_active(lk: livekit_api.LiveKitAPI, room: str, prefix: str = TRANSLATOR_PREFIX) -> bool:
    listing = await lk.room.list_participants(livekit_api.ListParticipantsRequest(room=room))
    return any(p.identity.startswith(prefix) and p.state == livekit_api.ParticipantInfo.State.ACTIVE
               for p in listing.participants)


def idle_worker_usage(seconds: float = 5.0) -> dict:
    """RSS and CPU of the idle pooled workers (processes of the loopback kubelet), from /proc."""
    def workers() -> dict[int, float]:
        found = {}
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and b"LINGO_POOL=" in (entry / "environ").read_bytes() \
                        and b"lingo-worker" in (entry / "cmdline").read_bytes():
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except OSError:
                continue
        return found

    before = workers()
    time.sleep(seconds)
    after = workers()
    rss = []
    for pid in after:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss.append(int(line.split()[1]) / 1024)
    cpu = [(after[pid] - before[pid]) / seconds * 100 for pid in after if pid in before]
    return {"workers": len(after), "rss_mb": [round(v) for v in rss], "cpu_percent": [round(v, 1) for v in cpu]}


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
    return {"post_ms": ms(posted), "in_room_ms": ms(in_room), "worker_ready_ms": None}


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


async def run(facade: str, secret: str, livekit, kube_create_pool, sessions: int, interval: float,
              idle_processes: int) -> dict:
    headers = {"ClientID": "bench", "ClientSecret": secret}
    results = {}
    async with aiohttp.ClientSession(base_url=facade) as http, \
            livekit_api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as lk:
        for mode in ("cold", "pool"):
            if mode == "pool":
                await kube_create_pool()
                await asyncio.sleep(5)  # let the freshly loaded workers settle
                results["idle_workers"] = await asyncio.to_thread(idle_worker_usage)
            rows = []
            for _ in range(sessions):
                rows.append(await one_session(http, headers, lk))
                print(mode, rows[-1], flush=True)
                await asyncio.sleep(interval)
            results[mode] = rows
        if AGENTS_PYTHON.exists():
            results["livekit-agents"] = await run_agents(lk, livekit, sessions, interval, idle_processes)
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

        raw = asyncio.run(run(facade, secret, cluster.livekit, create_pool, args.sessions, args.interval,
                              args.min_ready))

    idle = raw.pop("idle_workers")
    stats = {mode: {key: summary([row[key] for row in rows if row[key] is not None])
                    for key in ("post_ms", "in_room_ms", "worker_ready_ms")} for mode, rows in raw.items()}
    results = {"benchmark": "worker_pool", "machine": machine(), "sessions": args.sessions,
               "interval_seconds": args.interval, "min_ready": args.min_ready, "stats": stats, "raw": raw,
               "idle_workers": idle,
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

Idle pooled workers (en→es preloaded): RSS {idle['rss_mb']} MB, CPU {idle['cpu_percent']} % of a core.

Goal: translator in the room p99 < {TARGET_P99_MS} ms from a warm pool. For livekit-agents the
"POST" is creating the room plus the dispatch request, and "in the room" is the agent active there.
"""
    write_results("worker_pool", results, markdown,
                  {f"{mode}: POST → translator in room": [row["in_room_ms"] for row in raw[mode] if row["in_room_ms"]]
                   for mode in raw}, "milliseconds after POST")


if __name__ == "__main__":
    main()
