"""StreamingSession reconciliation: a LiveKit room, a tokens Secret and a worker (claimed from a
WorkerPool or a pod of its own), then the session's status and events.

Every step is idempotent (deterministic room name, create-or-adopt for owned objects), so a
retry after an error, or an operator restart halfway through, converges to the same result.
Expiry and deletion: session_lifetime.py; the worker's readiness afterwards: worker_readiness.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from dataclasses import dataclass

import kopf
from kubernetes_asyncio.client import ApiException

from lingo_api import resources as r
from lingo_api.faults import crash_point
from lingo_api.kube_time import format_time, parse_time, seconds_since
from lingo_api.session_spec import SessionSpec

from . import metrics
from .events import post_event
from .kube import create_or_get
from .livekit_rooms import LiveKitUnavailable
from .room_watch import max_participants, room_metadata
from .session_status import TERMINAL_PHASES, condition_true, get_condition, set_condition, update_status
from .steps import together
from .tokens_secret import tokens_secret_manifest
from .watched import SESSIONS
from .worker_claim import (HandoverFailed, adopt, claim_idle_pod, claimed_message, claimed_pod_of, hand_over,
                           pool_profiles)
from .worker_pod import worker_pod_manifest


def expiry_of(meta, spec: SessionSpec) -> dt.datetime:
    return parse_time(meta["creationTimestamp"]) + dt.timedelta(seconds=spec.ttl_seconds)


def control_url(config, name: str) -> str:
    base = config.facade_public_url.rstrip("/")
    ws_base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    # No query string: clients append `?token=`. The relay finds the namespace in the token.
    return f"{ws_base}/session-storage/sessions/{name}/control"


def parse_spec(spec) -> SessionSpec:
    try:
        return SessionSpec.model_validate(dict(spec))
    except ValueError as exc:
        # The CRD schema should make this unreachable; if it happens, retrying will not help.
        raise kopf.PermanentError(f"invalid spec: {exc}") from exc


# Longer names cannot be label values on the session's Secret and Pod (the CRD refuses them too).
MAX_SESSION_NAME = 63


@dataclass
class SessionWorker:
    pod_name: str
    pool: str = ""  # the pool it was claimed from; "" for a session's own cold worker
    created: bool = False
    endpoint: str = ""
    adopt: object = None  # a claimed worker's adoption (worker_claim.adopt), still to be awaited

    @property
    def message(self) -> str:
        return claimed_message(self.pod_name, self.pool)


@dataclass
class WorkerLookup:
    """What exists for a session's worker before anything is made: found while the room is created."""

    claimed: dict | None  # a pooled pod this session claimed before (an operator restart, a retry)
    cold_exists: bool  # its own cold pod
    profiles: dict[str, str]  # pool -> profile, for the namespace's pools


async def look_up_worker(memo: kopf.Memo, session: dict) -> WorkerLookup:
    meta = session["metadata"]

    async def cold_exists() -> bool:
        try:
            await memo.core.read_namespaced_pod(r.worker_pod_name(meta["name"]), meta["namespace"])
            return True
        except ApiException as exc:
            if exc.status != 404:
                raise
            return False

    return WorkerLookup(*await asyncio.gather(claimed_pod_of(memo.core, session), cold_exists(),
                                              pool_profiles(memo.custom, meta["namespace"])))


async def claim_for(memo: kopf.Memo, session: dict, spec: SessionSpec, found: WorkerLookup) -> tuple[dict | None, list[str]]:
    """The pooled pod this session has or now claims (None: it needs a cold one), and the pools
    of its profile that had no idle worker."""
    if found.claimed is not None or found.cold_exists or spec.worker_profile not in found.profiles.values():
        return found.claimed, []
    pod = await claim_idle_pod(memo.core, session, spec.worker_profile, found.profiles)
    dry = [] if pod else sorted(p for p, profile in found.profiles.items() if profile == spec.worker_profile)
    return pod, dry


async def ensure_worker(memo: kopf.Memo, session: dict, spec: SessionSpec, room: str, secret_data,
                        pod: dict | None) -> SessionWorker:
    """The session's worker: the pooled one it claimed (handed the session now; in the room when
    this returns), or else its own cold pod (operator/lingo_operator/worker_claim.py)."""
    meta, core = session["metadata"], memo.core
    namespace, cold_name = meta["namespace"], r.worker_pod_name(meta["name"])
    if pod is not None:
        pool, name = pod["metadata"]["labels"].get(r.LABEL_POOL, ""), pod["metadata"]["name"]
        try:
            await hand_over(core, memo.http, session, pod, room, secret_data, spec.source_language,
                            spec.target_languages)
            metrics.WORKERS_CLAIMED.labels("claimed").inc()
            return SessionWorker(name, pool=pool, endpoint=f"{pod['status']['podIP']}:{r.WORKER_PORT}",
                                 adopt=adopt(core, session, pod))
        except HandoverFailed as exc:
            metrics.WORKERS_CLAIMED.labels("handover_failed").inc()
            await post_event(core, session, "ClaimFailed", f"{exc}; starting a worker of its own", warning=True)
    else:
        metrics.WORKERS_CLAIMED.labels("cold").inc()
    pod_body = worker_pod_manifest(session, spec, memo.config, room)
    _, created = await create_or_get(
        lambda ns, b: core.create_namespaced_pod(ns, b),
        lambda n, ns: core.read_namespaced_pod(n, ns),
        namespace, cold_name, pod_body,
    )
    return SessionWorker(cold_name, created=created)


def backoff(config, retry: int) -> float:
    """Exponential back-off for LiveKit trouble: base, 2x, 4x ... capped at one minute."""
    return min(config.retry_delay_seconds * 2 ** min(retry, 10), 60.0)


def room_announcement(spec: SessionSpec, room: str) -> tuple[str, str]:
    """(reason, message) of RoomReady=True: the room exists, or the session needs none."""
    if spec.room:
        return r.Reason.ROOM_CREATED, f"LiveKit room {room} exists"
    return r.Reason.NO_ROOM, "no LiveKit room: audio flows over the control WebSocket only (spec.room is false)"


async def reconcile_session(body, memo: kopf.Memo, logger, retry: int = 0) -> None:
    meta, config = body["metadata"], memo.config
    name, namespace = meta["name"], meta["namespace"]
    if meta.get("deletionTimestamp"):
        return
    phase = (body.get("status") or {}).get("phase")
    if phase in TERMINAL_PHASES:
        return
    if len(name) > MAX_SESSION_NAME:
        raise kopf.PermanentError(f"name is {len(name)} characters; a session's name must have at most "
                                  f"{MAX_SESSION_NAME} (it labels the session's Secret and Pod)")
    spec = parse_spec(body["spec"])
    expires_at = expiry_of(meta, spec)
    remaining = (expires_at - dt.datetime.now(dt.timezone.utc)).total_seconds()
    if remaining <= 0:
        return  # past its TTL: session_lifetime.py expires it
    room = r.room_name(meta["uid"])
    session = {"apiVersion": r.API_VERSION, "kind": r.SESSION_KIND, "metadata": dict(meta), "spec": dict(body["spec"])}
    session["metadata"]["labels"] = dict(meta.get("labels") or {})

    described = dict(
        roomName=room,
        streamUrl=config.livekit_public_url,
        controlUrl=control_url(config, name),
        tokensSecretName=r.tokens_secret_name(name),
        expiresAt=format_time(expires_at),
        observedGeneration=meta.get("generation"),
    )
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[step], clock = (now - clock) * 1000, now

    # 1. The LiveKit room. Nothing else is made until it exists, so an outage leaves no debris;
    # meanwhile, what exists of the session's worker is looked up (reads only). A session without
    # a room (spec.room false: audio over the control WebSocket only) does not need LiveKit at all.
    lookup = asyncio.create_task(look_up_worker(memo, session))
    try:
        if spec.room:
            await memo.rooms.ensure_room(
                room, empty_timeout=int(remaining) + 60, max_participants=max_participants(body["spec"]),
                metadata=room_metadata(namespace, name, meta["uid"]),
            )
    except LiveKitUnavailable as exc:
        lookup.cancel()
        metrics.LIVEKIT_ERRORS.labels("create_room").inc()
        message = str(exc)

        def unavailable(status: dict, _):
            status.update(described)
            return set_condition(status, r.Condition.ROOM_READY, False, "LiveKitUnavailable", message)

        if await update_status(memo.custom, namespace, name, unavailable):
            await post_event(memo.core, body, "LiveKitUnavailable", message, warning=True)
        raise kopf.TemporaryError(message, delay=backoff(config, retry)) from exc
    except BaseException:
        lookup.cancel()
        raise
    found = await lookup
    lap("room")

    # 2. The tokens Secret (adopted as-is if a previous attempt already wrote it) and, at the
    # same time, the claim of an idle pooled worker (its label; a retry finds it by that label).
    secret_body = tokens_secret_manifest(session, spec, config, room, expires_at)
    lap("tokens")
    (secret, _), (pooled_pod, dry_pools) = await together(
        create_or_get(
            lambda ns, b: memo.core.create_namespaced_secret(ns, b),
            lambda n, ns: memo.core.read_namespaced_secret(n, ns),
            namespace, secret_body["metadata"]["name"], secret_body,
        ),
        claim_for(memo, session, spec, found),
    )
    lap("secret")

    # 3. The worker: the claimed one is handed the session (in the room when that returns), or
    # a cold pod of its own starts, whose readiness the worker reports (worker_readiness.py).
    # Meanwhile the events for the room, the tokens and a dry pool go out: they come before the
    # status that records them, so a crash in between repeats them rather than losing them.
    status_seen = body.get("status") or {}
    announcements = [
        (r.Condition.ROOM_READY, *room_announcement(spec, room)),
        (r.Condition.TOKENS_READY, "TokensIssued", f"{spec.publisher_count} publisher and {spec.subscriber_count} "
                                                   f"subscriber tokens in Secret {secret_body['metadata']['name']}"),
    ]
    events = [(reason, message, False) for ctype, reason, message in announcements
              if not condition_true(status_seen, ctype)]
    if dry_pools and pooled_pod is None:
        events.append(("NoIdleWorker", f"no idle worker in pool(s) {', '.join(dry_pools)}; "
                                       "starting a worker of its own", True))
    worker, *_ = await together(ensure_worker(memo, session, spec, room, secret.data, pooled_pod),
                                *(post_event(memo.core, body, *event) for event in events))
    described["workerPodName"] = worker.pod_name
    lap("pod")

    # 4. One status write for all of it (the pod watcher may already have set WorkerReady). A
    # claimed worker is in the room already: its status goes out at once, with its adoption
    # (owner and labels) and its WorkerClaimed event alongside (the one event a crash right
    # there can lose; the status keeps the same fact). A cold worker's event goes first.
    if worker.pool:
        alongside = [post_event(memo.core, body, "WorkerClaimed", worker.message), worker.adopt]
    else:
        alongside = []
        if worker.created or get_condition(status_seen, r.Condition.WORKER_READY) is None:
            await post_event(memo.core, body, "WorkerCreated", f"worker pod {worker.pod_name} created")
    lap("events")

    def provisioned(status: dict, _) -> bool:
        """Returns whether a claimed worker's WorkerReady flipped here (for the histogram)."""
        status.update(described)
        for ctype, reason, message in announcements:
            set_condition(status, ctype, True, reason, message)
        if worker.pool:
            status["workerEndpoint"] = worker.endpoint
            return set_condition(status, r.Condition.WORKER_READY, True, "WorkerClaimed", worker.message)
        if not any(c.get("type") == r.Condition.WORKER_READY for c in status.get("conditions") or []):
            set_condition(status, r.Condition.WORKER_READY, False, "WorkerStarting", "worker pod is starting")
        return False

    flipped, *_ = await together(update_status(memo.custom, namespace, name, provisioned), *alongside)
    if flipped:
        metrics.WORKER_READY_SECONDS.labels("claimed").observe(seconds_since(meta["creationTimestamp"]))
    crash_point("reconcile.status_written")
    lap("status")
    metrics.SESSIONS_PROVISIONED.inc()
    for step, milliseconds in timings.items():
        metrics.RECONCILE_STEP_SECONDS.labels(step).observe(milliseconds / 1000)
    # Parsed by bench/session_create.py for the reconcile time split.
    logger.info("reconcile timings %s", json.dumps({"session": f"{namespace}/{name}",
                                                    **{k: round(v, 1) for k, v in timings.items()}}))


@kopf.on.create(**SESSIONS)
@kopf.on.resume(**SESSIONS)
async def session_created(body, memo: kopf.Memo, logger, retry: int, **_):
    try:
        await reconcile_session(body, memo, logger, retry)
    except kopf.PermanentError as exc:
        message = str(exc)

        def failed(status: dict, _):
            status.update(phase=r.Phase.FAILED, message=message)

        await post_event(memo.core, body, "Failed", message, warning=True)
        await update_status(memo.custom, body["metadata"]["namespace"], body["metadata"]["name"], failed)
        raise
