"""A minimal LiveKit Agents worker, the comparison in bench/worker_pool.py (not part of the product).

livekit-agents from PyPI runs in its own virtual environment, `.venv-agents` (`make
bench-agents`): it pins another LiveKit SDK than the project's. Like this project's warm pool it
keeps prewarmed processes (`num_idle_processes`) and is dispatched explicitly (`agent_name`);
the agent joins the room it is sent to and stays until the room is deleted.

Run: .venv-agents/bin/python bench/agents_worker.py  (LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET)
"""

from __future__ import annotations

import asyncio
import os

from livekit.agents import AgentServer, JobContext, JobProcess

AGENT_NAME = "bench-agent"


def prewarm(process: JobProcess) -> None:
    process.userdata["warm"] = True  # where a real agent loads its models


server = AgentServer(num_idle_processes=int(os.environ.get("BENCH_IDLE_PROCESSES", "2")), setup_fnc=prewarm,
                     port=0, host="127.0.0.1")


@server.rtc_session(agent_name=AGENT_NAME)
async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect()
    left = asyncio.Event()
    ctx.room.on("disconnected", lambda *_: left.set())
    await left.wait()


if __name__ == "__main__":
    asyncio.run(server.run())
