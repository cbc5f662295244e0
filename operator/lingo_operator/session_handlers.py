"""StreamingSession reconciliation: a LiveKit room, a tokens Secret and a worker (claimed from a
WorkerPool or a pod of its own), then the session's status and events.

Every step is idempotent (deterministic room name, create-or-adopt for owned objects), so a
retry after an error, or an operator restart halfway through, converges to the same result.
The decisions (whether to run, the status, which conditions and events): session_plan.py.
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
from lingo_api.kube_time import seconds_since
from lingo_api.session_spec import SessionSpec

from . import metrics
from .events import post_event
from .kube import create_or_get
from .livekit_rooms import LiveKitUnavailable
from .memo import OperatorMemo
from .pool_handlers import suspect_node
from .room_watch import max_participants, room_metadata
from .session_plan import (announcements, apply_provisioned, backoff, cold_worker_is_news, described,
                           events_before_status, expiry_of, needs_reconcile, parse_spec)
from .session_status import set_condition, update_status
from .steps import together
from .suspect_nodes import pod_node, prefer_other_nodes
from .tokens_secret import tokens_secret_manifest
from .watched import SESSIONS
from .worker_claim import (HandoverFailed, WorkerUnreachable, adopt, claim_idle_pod, claimed_message,
                           claimed_pod_of, hand_over, pool_profiles)
from .worker_pod import worker_pod_manifest

# Idle pooled workers tried before a cold start: a worker lost mid-claim (its node gone, a kill)
# is followed by the next idle one rather than a cold start of several seconds.
HANDOVER_TRIES = 2


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


async def look_up_worker(memo: OperatorMemo, session: dict) -> WorkerLookup:
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


async def claim_for(memo: OperatorMemo, session: dict, spec: SessionSpec, found: WorkerLookup) -> tuple[dict | None, list[str]]:
    """The pooled pod this session has or now claims (None: it needs a cold one), and the pools
    of its profile that had no idle worker."""
    if found.claimed is not None or found.cold_exists or spec.worker_profile not in found.profiles.values():
        return found.claimed, []
    pod = await claim_idle_pod(memo.core, session, spec.worker_profile, found.profiles, memo.suspect_nodes)
    dry = [] if pod else sorted(p for p, profile in found.profiles.items() if profile == spec.worker_profile)
    return pod, dry


async def ensure_worker(memo: OperatorMemo, session: dict, spec: SessionSpec, room: str, secret_data,
                        pod: dict | None, profiles: dict[str, str]) -> SessionWorker:
    """The session's worker: the pooled one it claimed (handed the session now; in the room when
    this returns), or else its own cold pod (operator/lingo_operator/worker_claim.py). A pooled
    worker that fails its hand-over (deleted by hand_over) is followed by the next idle one, up to
    HANDOVER_TRIES, before a cold start."""
    meta, core = session["metadata"], memo.core
    namespace, cold_name = meta["namespace"], r.worker_pod_name(meta["name"])
    if pod is None:
        metrics.WORKERS_CLAIMED.labels("cold").inc()
    for attempt in range(1, HANDOVER_TRIES + 1):
        if pod is None:
            break
        pool, name = pod["metadata"]["labels"].get(r.LABEL_POOL, ""), pod["metadata"]["name"]
        memo.fence.check(f"claim of worker {name}")  # a claim is a write too
        try:
            await hand_over(core, memo.http, memo.claim_key, session, pod, room, secret_data, spec.source_language,
                            spec.target_languages)
            metrics.WORKERS_CLAIMED.labels("claimed").inc()
            return SessionWorker(name, pool=pool, endpoint=f"{pod['status']['podIP']}:{r.WORKER_PORT}",
                                 adopt=adopt(core, session, pod))
        except HandoverFailed as exc:
            metrics.WORKERS_CLAIMED.labels("handover_failed").inc()
            if isinstance(exc, WorkerUnreachable):
                suspect_node(memo, pod_node(pod))
            pod = await claim_idle_pod(core, session, spec.worker_profile, profiles, memo.suspect_nodes) \
                if attempt < HANDOVER_TRIES else None
            then = f"trying worker {pod['metadata']['name']}" if pod else "starting a worker of its own"
            await post_event(core, session, r.Reason.CLAIM_FAILED, f"{exc}; {then}", warning=True)
    pod_body = worker_pod_manifest(session, spec, memo.config, room)
    pod_body["spec"] = prefer_other_nodes(pod_body["spec"], memo.suspect_nodes.current())
    _, created = await create_or_get(
        lambda ns, b: core.create_namespaced_pod(ns, b),
        lambda n, ns: core.read_namespaced_pod(n, ns),
        namespace, cold_name, pod_body,
    )
    return SessionWorker(cold_name, created=created)


async def reconcile_session(body, memo: OperatorMemo, logger, retry: int = 0) -> None:
    if not needs_reconcile(body):
        return
    meta, config = body["metadata"], memo.config
    name, namespace = meta["name"], meta["namespace"]
    spec = parse_spec(body["spec"])
    expires_at = expiry_of(meta, spec)
    remaining = (expires_at - dt.datetime.now(dt.timezone.utc)).total_seconds()
    if remaining <= 0:
        return  # past its TTL: session_lifetime.py expires it
    room = r.room_name(meta["uid"])
    session = {"apiVersion": r.API_VERSION, "kind": r.SESSION_KIND, "metadata": dict(meta), "spec": dict(body["spec"])}
    session["metadata"]["labels"] = dict(meta.get("labels") or {})
    description = described(config, meta, room, expires_at)
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
            status.update(description)
            return set_condition(status, r.Condition.ROOM_READY, False, r.Reason.LIVEKIT_UNAVAILABLE, message)

        if await update_status(memo.custom, namespace, name, unavailable):
            await post_event(memo.core, body, r.Reason.LIVEKIT_UNAVAILABLE, message, warning=True)
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
    announced = announcements(spec, room, secret_body["metadata"]["name"])
    events = events_before_status(announced, status_seen, dry_pools, claimed=pooled_pod is not None)
    worker, *_ = await together(ensure_worker(memo, session, spec, room, secret.data, pooled_pod, found.profiles),
                                *(post_event(memo.core, body, *event) for event in events))
    description["workerPodName"] = worker.pod_name
    lap("pod")

    # 4. One status write for all of it (the pod watcher may already have set WorkerReady). A
    # claimed worker is in the room already: its status goes out at once, with its adoption
    # (owner and labels) and its WorkerClaimed event alongside (the one event a crash right
    # there can lose; the status keeps the same fact). A cold worker's event goes first.
    if worker.pool:
        alongside = [post_event(memo.core, body, r.Reason.WORKER_CLAIMED, worker.message), worker.adopt]
    else:
        alongside = []
        if cold_worker_is_news(worker.created, status_seen):
            await post_event(memo.core, body, r.Reason.WORKER_CREATED, f"worker pod {worker.pod_name} created")
    lap("events")

    def provisioned(status: dict, _) -> bool:
        return apply_provisioned(status, description, announced, worker.pool, worker.endpoint, worker.message)

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
async def session_created(body, memo: OperatorMemo, logger, retry: int, **_):
    try:
        await reconcile_session(body, memo, logger, retry)
    except kopf.PermanentError as exc:
        message = str(exc)

        def failed(status: dict, _):
            status.update(phase=r.Phase.FAILED, message=message)

        await post_event(memo.core, body, r.Reason.FAILED, message, warning=True)
        await update_status(memo.custom, body["metadata"]["namespace"], body["metadata"]["name"], failed)
        raise
