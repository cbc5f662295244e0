"""`lingo-worker`: the translation worker of one session (configured by its pod's env, or by its claim
when it waits in a WorkerPool)."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from lingo_api.failure_text import describe_failure
from lingo_api.livekit_sdk import run_and_exit
from lingo_api.untrusted import log_to_stderr

from .claim import Claim, ClaimDesk
from .control_api import ControlHub, TokenBook
from .engines.base import EngineUnavailable
from .http_app import build_control_app
from .runtime import WorkerRuntime
from .settings import WorkerSettings
from .task import TaskState

log = logging.getLogger("lingo.worker")

# How the process ends tells the pod's restart policy (and the operator) what happened: 0 when the
# task ended or the pod is stopped (the pod completes and frees its node's resources at once),
# ROOM_GONE when LiveKit deleted the room (restarted, it rejoins if the room is made again).
ROOM_GONE = 3
# After end_task: time for the control API's last messages (current_task, eos) to go out.
ENDED_GRACE_SECONDS = 1.0


async def _first(*aws) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()


async def stay_in_room(runtime: WorkerRuntime, stop: asyncio.Event) -> int:
    """Join the room, and join again (with back-off) whenever the connection is lost for good;
    readiness reports the gap. Returns the exit code: when asked to stop, when the task ended,
    or when the room was deleted."""
    delay = 1.0
    while not stop.is_set():
        try:
            await runtime.join_room()
            delay = 1.0
        except Exception as exc:  # LiveKit unreachable or refusing: retry
            log.warning("joining the room failed (%s); retrying in %.0fs", describe_failure(exc), delay)
            await _first(stop.wait(), asyncio.sleep(delay))
            delay = min(delay * 2, 30)
            continue
        # The task's end is awaited itself, not only the disconnect it causes.
        await _first(stop.wait(), runtime.disconnected.wait(), runtime.ended.wait())
        if stop.is_set():
            return 0
        if runtime.task.state == TaskState.ENDED:
            log.info("the task ended; exiting")
            await _first(stop.wait(), asyncio.sleep(ENDED_GRACE_SECONDS))
            return 0
        if runtime.room_deleted:
            # The session expired or was deleted, or someone removed its room: joining again now
            # would be refused (LiveKit does not create rooms on join).
            log.info("the room was deleted")
            return ROOM_GONE
        log.warning("lost the LiveKit room; joining again")
        await runtime.reset_media()
    return 0


async def stay_without_room(runtime: WorkerRuntime, stop: asyncio.Event) -> int:
    """A session without a LiveKit room: serve the control API until asked to stop or the task ends."""
    await runtime.start_without_room()
    await _first(stop.wait(), runtime.ended.wait())
    if not stop.is_set():
        log.info("the task ended; exiting")
        await _first(stop.wait(), asyncio.sleep(ENDED_GRACE_SECONDS))
    return 0


def stay(runtime: WorkerRuntime, stop: asyncio.Event) -> asyncio.Task:
    """The session's life: in its room, or without one (spec.room false)."""
    life = stay_in_room if runtime.settings.join_room else stay_without_room
    return asyncio.create_task(life(runtime, stop))


async def serve(settings: WorkerSettings) -> int:
    runtime = WorkerRuntime(settings)
    hub = ControlHub(runtime, TokenBook(settings.client_tokens, settings.room))
    runtime.broadcast, runtime.on_speech, runtime.on_data = hub.broadcast, hub.speech, hub.handle_data
    runtime.on_participant = hub.participant_joined
    app = build_control_app(hub)
    desk = None
    if settings.pool:
        async def accept(claim: Claim) -> None:
            hub.tokens = TokenBook(claim.client_tokens, claim.room)
            runtime.assign_session(claim.room, claim.worker_token, claim.source_language, claim.target_languages,
                                   claim.join_room)

        desk = ClaimDesk(settings.claim_public_key, settings.pod_uid, accept, runtime.joined)
        app.router.add_post("/claim", desk.handle)
    # A worker that is done does not wait long on open control connections (they are told first).
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=3)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    log.info("control API on %s:%s (%s, profile %s)", settings.host, settings.port,
             f"pool {settings.pool}" if settings.pool else f"room {settings.room}", settings.profile)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # A session's own (cold) worker joins its room while the engines load; a pooled one has no
    # room until its claim.
    in_room = None if desk else stay(runtime, stop)
    try:
        try:
            await runtime.load_engines()
        except EngineUnavailable as exc:
            log.error("cannot start: %s", exc)
            return 1
        if desk is not None:
            await _first(stop.wait(), desk.claimed.wait())
            if stop.is_set():
                return 0
            in_room = stay(runtime, stop)
        return await in_room
    finally:
        if in_room is not None and not in_room.done():
            in_room.cancel()
            await asyncio.gather(in_room, return_exceptions=True)
        await runtime.shutdown_media()
        await hub.background.aclose()
        await runtime.background.aclose()
        await runner.cleanup()


def main() -> None:
    settings = WorkerSettings.from_env()
    log_to_stderr(settings.log_level)
    run_and_exit(lambda: asyncio.run(serve(settings)))


if __name__ == "__main__":
    main()
