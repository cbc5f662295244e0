"""One watcher of LiveKit for every session this operator serves, polling ListRooms every few
seconds (one call for all rooms), so rooms match the sessions that own them:

- a provisioned session whose room is missing (LiveKit restarted and lost it) gets it back
  with the operator's settings; a room whose settings differ (someone else made it) is
  deleted and made again;
- while LiveKit cannot be reached, every provisioned session says so (RoomReady=False,
  LiveKitUnavailable) within one poll, and RoomReady=True again once it answers;
- a `lingo-` room that belongs to no session, seen twice `orphan_grace` apart and confirmed
  against the API server, is deleted: rooms exist only while their session does.

Rooms the operator makes carry `{"namespace", "session", "uid"}` as metadata, so an operator
that watches only some namespaces never touches another operator's rooms. Sessions are known
from kopf's watch events (`observe`), not read per room.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fnmatch
import json
import logging
import time
from dataclasses import dataclass

from kubernetes_asyncio.client import ApiException, CoreV1Api, CustomObjectsApi

from lingo_api import resources as r
from lingo_api.kube_time import parse_time
from lingo_api.session_spec import DEFAULT_TTL_SECONDS

from . import metrics
from .events import post_event
from .fencing import FencedOut
from .livekit_rooms import DEPARTURE_TIMEOUT_SECONDS, LiveKitUnavailable, RoomService
from .session_status import SessionGone, TERMINAL_PHASES, condition_true, set_condition, update_status

log = logging.getLogger("lingo.operator")


def has_room(session: dict) -> bool:
    """Whether a session has a LiveKit room (spec.room: true unless set false)."""
    return (session.get("spec") or {}).get("room", True) is not False


def room_metadata(namespace: str, name: str, uid: str) -> str:
    return json.dumps({"namespace": namespace, "session": name, "uid": uid}, separators=(",", ":"))


def max_participants(spec: dict) -> int:
    """Publishers, subscribers and the worker."""
    return int(spec.get("publisherCount", 1)) + int(spec.get("subscriberCount", 0)) + 1


@dataclass
class WatchedSession:
    namespace: str
    name: str
    uid: str
    max_participants: int
    empty_timeout: int
    provisioned: bool  # room and tokens were made and the session is not ending
    room_ready: bool
    expires_at: dt.datetime

    @property
    def live(self) -> bool:
        """Provisioned and within its TTL: its room should exist (the expiry removes it at the TTL,
        before the status says Expired, and must not find it made again)."""
        return self.provisioned and dt.datetime.now(dt.timezone.utc) < self.expires_at

    @property
    def reference(self) -> dict:
        """Enough of the object for kopf to post an event about it."""
        return {"apiVersion": r.API_VERSION, "kind": r.SESSION_KIND,
                "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid}}


class RoomWatch:
    def __init__(self, rooms: RoomService, custom: CustomObjectsApi, core: CoreV1Api, namespaces: list[str],
                 interval: float = 2.0, orphan_grace: float = 30.0):
        self.rooms, self.custom, self.core, self.namespaces = rooms, custom, core, namespaces
        self.interval, self.orphan_grace = interval, orphan_grace
        self.sessions: dict[str, WatchedSession] = {}  # by room name
        self._suspects: dict[str, float] = {}  # room name -> when it was first seen without a session
        self.livekit_reachable: bool | None = None

    # -- what the sessions say -------------------------------------------------------------

    def observe(self, event_type: str | None, body: dict) -> None:
        meta = body["metadata"]
        room = r.room_name(meta["uid"])
        if event_type == "DELETED" or not has_room(body):
            self.sessions.pop(room, None)  # gone, or a session without a room: none to keep
            return
        status = body.get("status") or {}
        ttl = int((body.get("spec") or {}).get("ttlSeconds", DEFAULT_TTL_SECONDS))
        self.sessions[room] = WatchedSession(
            namespace=meta["namespace"], name=meta["name"], uid=meta["uid"],
            max_participants=max_participants(body.get("spec") or {}),
            # A room made again outlives its session at most by this; the expiry deletes it.
            empty_timeout=ttl + 60,
            provisioned=condition_true(status, r.Condition.TOKENS_READY) and status.get("phase") not in TERMINAL_PHASES
            and not meta.get("deletionTimestamp"),
            room_ready=condition_true(status, r.Condition.ROOM_READY),
            expires_at=parse_time(meta["creationTimestamp"]) + dt.timedelta(seconds=ttl),
        )

    def _in_scope(self, namespace: str) -> bool:
        return not self.namespaces or any(fnmatch.fnmatchcase(namespace, pattern) for pattern in self.namespaces)

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except FencedOut as exc:  # the Lease is in doubt: this pass writes nothing more
                log.warning("room watch: %s", exc)
            except Exception:  # one bad pass must not end the watch
                log.exception("room watch pass failed")
            await asyncio.sleep(self.interval)

    async def check(self) -> None:
        try:
            rooms = {room.name: room for room in await self.rooms.list_rooms()}
        except LiveKitUnavailable as exc:
            metrics.LIVEKIT_ERRORS.labels("list_rooms").inc()
            if self.livekit_reachable is not False:
                log.warning("LiveKit unreachable: %s", exc)
            self.livekit_reachable = False
            for session in list(self.sessions.values()):
                if session.live and session.room_ready:
                    await self._set_room_ready(session, False, r.Reason.LIVEKIT_UNAVAILABLE, str(exc))
            return
        self.livekit_reachable = True
        for room_name, session in list(self.sessions.items()):
            if session.live:
                await self._repair(session, room_name, rooms.get(room_name))
        await self._sweep_orphans(rooms)

    async def _repair(self, session: WatchedSession, room_name: str, room) -> None:
        what = None
        if room is not None and (room.max_participants != session.max_participants
                                 or room.departure_timeout != DEPARTURE_TIMEOUT_SECONDS):
            what = "settings"
            await self.rooms.delete_room(room_name)
        elif room is None:
            what = "room"
        if what:
            try:
                await self.rooms.ensure_room(room_name, empty_timeout=session.empty_timeout,
                                             max_participants=session.max_participants,
                                             metadata=room_metadata(session.namespace, session.name, session.uid))
            except LiveKitUnavailable as exc:
                await self._set_room_ready(session, False, r.Reason.LIVEKIT_UNAVAILABLE, str(exc))
                return
            metrics.DRIFT_REPAIRS.labels(what).inc()
            message = (f"LiveKit room {room_name} was missing; created it again" if what == "room"
                       else f"LiveKit room {room_name} had foreign settings; made it again with the session's")
            await post_event(self.core, session.reference, r.Reason.DRIFT, message, warning=True)
            log.warning("%s/%s: %s", session.namespace, session.name, message)
        if not session.room_ready or what:
            await self._set_room_ready(session, True, r.Reason.ROOM_CREATED, f"LiveKit room {room_name} exists")

    async def _set_room_ready(self, session: WatchedSession, ready: bool, reason: str, message: str) -> None:
        def apply(status: dict, body: dict):
            if status.get("phase") in TERMINAL_PHASES or body["metadata"].get("deletionTimestamp"):
                return False
            return set_condition(status, r.Condition.ROOM_READY, ready, reason, message)

        try:
            flipped = await update_status(self.custom, session.namespace, session.name, apply)
        except SessionGone:
            return
        session.room_ready = ready
        if flipped:
            await post_event(self.core, session.reference, reason, message, warning=not ready)

    async def _sweep_orphans(self, rooms: dict) -> None:
        now = time.monotonic()
        for name in list(self._suspects):
            if name not in rooms or name in self.sessions:
                del self._suspects[name]
        for name, room in rooms.items():
            if not name.startswith(r.ROOM_PREFIX) or name in self.sessions:
                continue
            try:
                owner = json.loads(room.metadata) if room.metadata else {}
            except ValueError:
                owner = {}
            if owner and not self._in_scope(str(owner.get("namespace"))):
                continue  # another operator's room
            first_seen = self._suspects.setdefault(name, now)
            if now - first_seen < self.orphan_grace or await self._session_exists(owner):
                continue
            await self.rooms.delete_room(name)
            del self._suspects[name]
            metrics.DRIFT_REPAIRS.labels("orphan_room").inc()
            log.warning("deleted LiveKit room %s: it belongs to no session (%s)", name, owner or "no owner")

    async def _session_exists(self, owner: dict) -> bool:
        if not owner.get("namespace") or not owner.get("session"):
            return False
        try:
            session = await self.custom.get_namespaced_custom_object(
                r.GROUP, r.VERSION, owner["namespace"], r.SESSION_PLURAL, owner["session"])
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return session["metadata"]["uid"] == owner.get("uid")
