"""What a session's reconcile decides from the resource alone, without a call to any server: whether
it runs, the session's spec and expiry, what its status describes, and which conditions and events
it announces. session_handlers.py does the calls around these decisions; tests/test_session_plan.py
checks them without servers.
"""

from __future__ import annotations

import datetime as dt

import kopf

from lingo_api import resources as r
from lingo_api.kube_time import format_time, parse_time
from lingo_api.session_spec import SessionSpec

from .session_status import TERMINAL_PHASES, condition_true, get_condition, set_condition

# Longer names cannot be label values on the session's Secret and Pod (the CRD refuses them too).
MAX_SESSION_NAME = 63

Announcement = tuple[str, str, str]  # condition type, reason, message
Event = tuple[str, str, bool]  # reason, message, warning


def needs_reconcile(body) -> bool:
    """False for a session being deleted or in a terminal phase; a name too long to label what the
    session owns fails for good."""
    meta = body["metadata"]
    if meta.get("deletionTimestamp") or (body.get("status") or {}).get("phase") in TERMINAL_PHASES:
        return False
    if len(meta["name"]) > MAX_SESSION_NAME:
        raise kopf.PermanentError(f"name is {len(meta['name'])} characters; a session's name must have at most "
                                  f"{MAX_SESSION_NAME} (it labels the session's Secret and Pod)")
    return True


def parse_spec(spec) -> SessionSpec:
    try:
        return SessionSpec.model_validate(dict(spec))
    except ValueError as exc:
        # The CRD schema should make this unreachable; if it happens, retrying will not help.
        raise kopf.PermanentError(f"invalid spec: {exc}") from exc


def expiry_of(meta, spec: SessionSpec) -> dt.datetime:
    return parse_time(meta["creationTimestamp"]) + dt.timedelta(seconds=spec.ttl_seconds)


def backoff(config, retry: int) -> float:
    """Exponential back-off for LiveKit trouble: base, 2x, 4x ... capped at one minute."""
    return min(config.retry_delay_seconds * 2 ** min(retry, 10), 60.0)


def control_url(config, name: str) -> str:
    base = config.facade_public_url.rstrip("/")
    ws_base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    # No query string: clients append `?token=`. The relay finds the namespace in the token.
    return f"{ws_base}/session-storage/sessions/{name}/control"


def described(config, meta, room: str, expires_at: dt.datetime) -> dict:
    """The status fields that describe the session's parts (not its conditions)."""
    return dict(
        roomName=room,
        streamUrl=config.livekit_public_url,
        controlUrl=control_url(config, meta["name"]),
        tokensSecretName=r.tokens_secret_name(meta["name"]),
        expiresAt=format_time(expires_at),
        observedGeneration=meta.get("generation"),
    )


def room_announcement(spec: SessionSpec, room: str) -> tuple[str, str]:
    """(reason, message) of RoomReady=True: the room exists, or the session needs none."""
    if spec.room:
        return r.Reason.ROOM_CREATED, f"LiveKit room {room} exists"
    return r.Reason.NO_ROOM, "no LiveKit room: audio flows over the control WebSocket only (spec.room is false)"


def announcements(spec: SessionSpec, room: str, secret_name: str) -> list[Announcement]:
    """The conditions a provisioned session has True: its room and its tokens."""
    return [
        (r.Condition.ROOM_READY, *room_announcement(spec, room)),
        (r.Condition.TOKENS_READY, r.Reason.TOKENS_ISSUED,
         f"{spec.publisher_count} publisher and {spec.subscriber_count} subscriber tokens in Secret {secret_name}"),
    ]


def events_before_status(announced: list[Announcement], status_seen: dict, dry_pools: list[str],
                         claimed: bool) -> list[Event]:
    """Events for what is new since the status last seen, and for pools that had no idle worker
    when the session had to start one of its own."""
    events = [(reason, message, False) for ctype, reason, message in announced
              if not condition_true(status_seen, ctype)]
    if dry_pools and not claimed:
        events.append((r.Reason.NO_IDLE_WORKER, f"no idle worker in pool(s) {', '.join(dry_pools)}; "
                                                "starting a worker of its own", True))
    return events


def cold_worker_is_news(created: bool, status_seen: dict) -> bool:
    """Whether a cold worker's WorkerCreated event is due: it was made now, or no status says so yet."""
    return created or get_condition(status_seen, r.Condition.WORKER_READY) is None


def apply_provisioned(status: dict, description: dict, announced: list[Announcement], pool: str,
                      endpoint: str, claimed_message: str) -> bool:
    """The one status write of a provisioned session; returns whether a claimed worker's
    WorkerReady flipped here. A cold worker's readiness is the pod watcher's to write."""
    status.update(description)
    for ctype, reason, message in announced:
        set_condition(status, ctype, True, reason, message)
    if pool:
        status["workerEndpoint"] = endpoint
        return set_condition(status, r.Condition.WORKER_READY, True, r.Reason.WORKER_CLAIMED, claimed_message)
    if get_condition(status, r.Condition.WORKER_READY) is None:
        set_condition(status, r.Condition.WORKER_READY, False, r.Reason.WORKER_STARTING, "worker pod is starting")
    return False
