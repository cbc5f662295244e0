"""Session creation through the facade: latency from POST to 200, sustained sessions/minute,
and the operator's reconcile time split (room, tokens, secret, pod, status).

Two phases: (1) open-loop load at the target rate (default 100 sessions/minute), which is
what the latency targets are about; (2) saturation, N closed-loop clients as fast as they
can, which gives the maximum sustained sessions/minute.

The stack is the loopback one (real kube-apiserver, operator, facade, livekit-server). No
kubelet runs: a 200 means the room and tokens exist; worker readiness is a separate
condition, measured by bench/worker_latency.py.

Run: python -m bench.session_create [--rate 100] [--duration 60] [--clients 8] [--sessions 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp

from lingo_loopback.stack import register_client

from .common import loopback_stack, machine, summary, write_results

NAMESPACE = "bench"
TARGETS = {"p50_ms": 150, "p99_ms": 1000, "sessions_per_minute": 100}


class Load:
    """POSTs sessions and records latency (ms) of each 200; counts everything else as failure."""

    def __init__(self, http: aiohttp.ClientSession, secret: str):
        self.http = http
        self.headers = {"ClientID": "bench", "ClientSecret": secret}
        self.latencies: list[float] = []
        self.failures = 0

    async def one(self) -> None:
        body = {"data": {"publisher_count": 1, "subscriber_count": 3}}
        started = time.perf_counter()
        async with self.http.post("/session-storage/sessions", json=body, headers=self.headers) as response:
            await response.read()
        if response.status == 200:
            self.latencies.append((time.perf_counter() - started) * 1000)
        else:
            self.failures += 1

    async def paced(self, per_minute: float, duration: float) -> float:
        """Open loop: start one request every 60/per_minute seconds regardless of answers."""
        interval, started, tasks = 60 / per_minute, time.perf_counter(), []
        for n in range(int(duration / interval)):
            await asyncio.sleep(max(0.0, started + n * interval - time.perf_counter()))
            tasks.append(asyncio.create_task(self.one()))
        await asyncio.gather(*tasks)
        return time.perf_counter() - started

    async def saturate(self, clients: int, total: int) -> float:
        remaining = total

        async def client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await self.one()

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return time.perf_counter() - started


async def measure(facade: str, secret: str, args) -> tuple[Load, float, Load, float]:
    async with aiohttp.ClientSession(base_url=facade, timeout=aiohttp.ClientTimeout(total=60)) as http:
        warmup = Load(http, secret)
        for _ in range(3):  # connections, caches and first-call imports
            await warmup.one()
        paced = Load(http, secret)
        paced_elapsed = await paced.paced(args.rate, args.duration)
        saturated = Load(http, secret)
        saturated_elapsed = await saturated.saturate(args.clients, args.sessions)
    return paced, paced_elapsed, saturated, saturated_elapsed


def reconcile_split(operator_log: str) -> dict:
    steps: dict[str, list[float]] = {}
    for line in operator_log.splitlines():
        if "reconcile timings " in line:
            record = json.loads(line.split("reconcile timings ", 1)[1])
            for key, value in record.items():
                if key != "session":
                    steps.setdefault(key, []).append(value)
    return {step: summary(values) for step, values in steps.items()}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.session_create", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=100, help="paced phase: sessions per minute")
    parser.add_argument("--duration", type=float, default=60, help="paced phase: seconds")
    parser.add_argument("--clients", type=int, default=8, help="saturation phase: concurrent clients")
    parser.add_argument("--sessions", type=int, default=200, help="saturation phase: sessions in all")
    args = parser.parse_args()
    with loopback_stack(NAMESPACE, with_kubelet=False) as (cluster, facade):
        secret = register_client(cluster, NAMESPACE, "bench", max_sessions=10_000)
        paced, paced_elapsed, saturated, saturated_elapsed = asyncio.run(measure(facade, secret, args))
        split = reconcile_split((cluster.log_dir / "operator.log").read_text())
    latency, loaded = summary(paced.latencies), summary(saturated.latencies)
    achieved = round(len(paced.latencies) / paced_elapsed * 60, 1)
    capacity = round(len(saturated.latencies) / saturated_elapsed * 60, 1)
    results = {
        "benchmark": "session_create", "machine": machine(), "targets": TARGETS,
        "paced": {"rate_per_minute": args.rate, "duration_s": args.duration, "achieved_per_minute": achieved,
                  "failures": paced.failures, "latency_ms": latency},
        "saturation": {"clients": args.clients, "sessions": args.sessions, "failures": saturated.failures,
                       "sessions_per_minute": capacity, "latency_ms": loaded},
        "reconcile_ms": split,
    }
    rows = "\n".join(f"| {step} | {s['p50']} | {s['p95']} | {s['p99']} |" for step, s in split.items())
    markdown = f"""# Session creation on the loopback stack ({machine()['cpus']} CPUs)

At the target load ({args.rate:.0f} sessions/minute, open loop, {args.duration:.0f} s):

| metric | value | target |
|---|---|---|
| POST→200 p50 | {latency['p50']} ms | < {TARGETS['p50_ms']} ms |
| POST→200 p95 | {latency['p95']} ms | |
| POST→200 p99 | {latency['p99']} ms | < {TARGETS['p99_ms']} ms |
| sessions/minute sustained | {achieved} | ≥ {TARGETS['sessions_per_minute']} |
| failures | {paced.failures} | 0 |

At saturation ({args.clients} clients back to back, {args.sessions} sessions): {capacity} sessions/minute,
POST→200 p50 {loaded['p50']} ms, p99 {loaded['p99']} ms, {saturated.failures} failures.

Operator reconcile split, all sessions (ms):

| step | p50 | p95 | p99 |
|---|---|---|---|
{rows}
"""
    write_results("session_create", results, markdown,
                  {f"{args.rate:.0f}/min paced": paced.latencies, "saturation": saturated.latencies}, "milliseconds")


if __name__ == "__main__":
    main()
