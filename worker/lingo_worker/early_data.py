"""Control messages that arrive over LiveKit before the room has said who sent them.

livekit-server announces a participant that publishes nothing yet to the others in batches, every
3 s (`subscriberUpdateInterval`, pkg/rtc/room.go), but relays its data packets at once, and the
LiveKit SDK hands a packet from a participant it does not know yet over without a sender (its
identity is lost on the way). Palabra's SDK in WebRTC mode joins, sends `set_task` a second later
and waits for an answer: its first messages are of this kind.

They are held (up to HOLD_SECONDS, MAX_HELD packets) until the room announces the session clients
that joined meanwhile. The sender has joined before it sent, so it is among them: when that is one
client, the packets are its, and they are delivered in order, before what it sends next. When it
is several (or none came), who sent them cannot be told, and they are dropped with a warning: a
control message never runs under another client's rights.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Coroutine

log = logging.getLogger("lingo.worker")

HOLD_SECONDS = 5.0  # the server's 3 s batch interval, with room to spare
MAX_HELD = 32
# Participants of one batch are announced back to back: after the first, this long for the rest.
SETTLE_SECONDS = 0.2


class EarlyData:
    def __init__(self, deliver: Callable[[str, bytes], Awaitable[None]],
                 spawn: Callable[[Coroutine, str], asyncio.Task]):
        self._deliver = deliver  # deliver(identity, payload): run a control message as that client
        self._spawn = spawn  # the owner's BackgroundTasks.spawn (worker/lingo_worker/background.py)
        self._held: list[bytes] = []  # packets without a sender, in arrival order
        self._joined: list[str] = []  # session clients announced since the first held packet
        self._behind: list[tuple[str, bytes]] = []  # their packets that came while held ones wait
        self._announced = asyncio.Event()
        self._resolving: asyncio.Task | None = None

    def hold(self, payload: bytes) -> None:
        """A packet whose sender the room does not know yet."""
        if len(self._held) >= MAX_HELD:
            log.warning("over %d control messages from participants not announced yet; dropped one", MAX_HELD)
            return
        self._held.append(payload)
        if self._resolving is None:
            self._resolving = self._spawn(self._resolve(), "early-data")

    def joined(self, identity: str) -> None:
        """The room announced a session client."""
        if self._resolving is not None:
            self._joined.append(identity)
            self._announced.set()

    def keep_order(self, identity: str, payload: bytes) -> bool:
        """Whether a packet from a known client waits behind held ones that may be its own."""
        if self._resolving is None or identity not in self._joined:
            return False
        self._behind.append((identity, payload))
        return True

    async def _resolve(self) -> None:
        try:
            await asyncio.wait_for(self._announced.wait(), HOLD_SECONDS)
            await asyncio.sleep(SETTLE_SECONDS)
        except TimeoutError:
            pass
        held, joined, behind = self._held, sorted(set(self._joined)), self._behind
        self._held, self._joined, self._behind = [], [], []
        self._announced.clear()
        self._resolving = None
        if len(joined) == 1:
            for payload in held:
                await self._deliver(joined[0], payload)
        else:
            log.warning("%d control message(s) from a participant the room had not announced were dropped: "
                        "%d session clients joined meanwhile", len(held), len(joined))
        for identity, payload in behind:
            await self._deliver(identity, payload)
