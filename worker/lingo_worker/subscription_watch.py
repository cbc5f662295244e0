"""Publisher audio the room announced but never handed to the worker is asked for again.

Seen in .ci/run: a worker joined, the console's publisher published its microphone, and no
`track_subscribed` reached the worker for 70 s, until the room was made again; the listener heard
nothing. The Python SDK drops a `track_subscribed` whose participant or publication it does not
know yet (a debug line only), so a subscription can be made on the server and lost on the way.
Every CHECK_SECONDS the worker looks at the publishers' audio publications: one it has not been
handed for STALE_SECONDS is unsubscribed and subscribed again, which makes the SDK announce it
anew, and the log says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from livekit import rtc

log = logging.getLogger("lingo.worker")

CHECK_SECONDS = 2.0
STALE_SECONDS = 5.0
RESUBSCRIBE_GAP_SECONDS = 0.3


async def watch_subscriptions(room: rtc.Room, is_publisher: Callable[[str], bool],
                              received: Callable[[str], bool]) -> None:
    """Runs while the worker is in `room`; `received(sid)` says a track reached the pipeline."""
    waiting_since: dict[str, float] = {}
    while room.isconnected():
        await asyncio.sleep(CHECK_SECONDS)
        now = time.monotonic()
        announced = set()
        for participant in list(room.remote_participants.values()):
            if not is_publisher(participant.identity):
                continue
            for publication in list(participant.track_publications.values()):
                if publication.kind != rtc.TrackKind.KIND_AUDIO or received(publication.sid):
                    continue
                announced.add(publication.sid)
                since = waiting_since.setdefault(publication.sid, now)
                if now - since < STALE_SECONDS:
                    continue
                log.warning("audio of %s (track %s) was published %.0f s ago and has not arrived; "
                            "subscribing again", participant.identity, publication.sid, now - since)
                publication.set_subscribed(False)
                await asyncio.sleep(RESUBSCRIBE_GAP_SECONDS)
                publication.set_subscribed(True)
                waiting_since[publication.sid] = time.monotonic()
        for sid in set(waiting_since) - announced:
            del waiting_since[sid]
