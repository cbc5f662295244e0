"""kopf handlers: reconcile StreamingSessions into a LiveKit room, a tokens Secret and a worker Pod.

Every step is idempotent (deterministic room name, create-or-adopt for owned objects), so a
retry after an error, or an operator restart halfway through, converges to the same result.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field

import aiohttp
import kopf
from kubernetes_asyncio.client import ApiException, CoreV1Api, CustomObjectsApi

from lingo_api import resources as r
from lingo_api.faults import crash_point
from lingo_api.kube_client import new_api_client
from lingo_api.kube_time import format_time, parse_time
from lingo_api.session_spec import SessionSpec

from .config import load_config
from . import metrics
from .events import post_event
from .kube import create_or_get, delete_ignoring_missing
from .livekit_rooms import LiveKitUnavailable, RoomService
from .pool_handlers import stop_pools
from .room_watch import RoomWatch, max_participants, room_metadata
from .session_status import SessionGone, TERMINAL_PHASES, condition_true, get_condition, set_condition, update_status
from .tokens_secret import tokens_secret_manifest
from .worker_claim import HandoverFailed, adopt, claim_idle_pod, claimed_pod_of, hand_over, pool_profiles
from .worker_pod import worker_pod_manifest
from .worker_pool import pod_ready

SESSIONS = dict(group=r.GROUP, version=r.VERSION, plural=r.SESSION_PLURAL)
WORKER_PODS = dict(labels={r.LABEL_MANAGED_BY: r.MANAGED_BY, r.LABEL_COMPONENT: r.WORKER_COMPONENT})

log = logging.getLogger("lingo.operator")


# -- startup -------------------------------------------------------------------------------


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_):
    settings.persistence.finalizer = r.FINALIZER
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.networking.request_timeout = 30
    # Retry waits after API errors: kopf's default climbs to 21 s, longer than the facade waits
    # for a new session, so a create right after an API server restart would time out.
    settings.networking.error_backoffs = [0.5, 1, 1, 2, 2, 3]
    # kopf waits this long for an object's events to settle before handling them (default
    # 0.1 s, paid on each of the create's round trips); sessions are created by one writer.
    settings.batching.batch_window = 0.01
    config = load_config()
    memo.config = config
    memo.rooms = RoomService(
        config.livekit_api_url, config.livekit_api_key, config.livekit_api_secret.get_secret_value()
    )
    memo.k8s = await new_api_client()
    memo.core = CoreV1Api(memo.k8s)
    memo.custom = CustomObjectsApi(memo.k8s)
    memo.http = aiohttp.ClientSession()  # to pooled workers' claim endpoint
    # WorkerPools (pool_handlers.py): latest spec, keeper task and wake-up event per (namespace, pool).
    memo.pools, memo.pool_tasks, memo.pool_wakeups = {}, {}, {}
    memo.readiness_followers = {}  # pod uid -> task waiting on a starting worker's /readyz
    memo.room_watch = RoomWatch(memo.rooms, memo.custom, memo.core, list(memo.get("watch_namespaces") or []),
                                interval=config.room_watch_interval_seconds,
                                orphan_grace=config.orphan_room_grace_seconds)
    memo.room_watch_task = asyncio.create_task(memo.room_watch.run(), name="room-watch")
    log.info("operator ready; LiveKit at %s", config.livekit_api_url)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_):
    memo.room_watch_task.cancel()
    await asyncio.gather(memo.room_watch_task, return_exceptions=True)
    await stop_pools(memo)
    for task in list(memo.readiness_followers.values()):
        task.cancel()
    await asyncio.gather(*memo.readiness_followers.values(), return_exceptions=True)
    await memo.rooms.close()
    await memo.http.close()
    await memo.k8s.close()


@kopf.on.event(**SESSIONS)
def session_seen(event, body, memo: kopf.Memo, **_):
    """Keeps the room watcher's view of the sessions current (no reads of its own)."""
    memo.room_watch.observe(event.get("type"), body)


# -- helpers -------------------------------------------------------------------------------


def _seconds_since(timestamp: str) -> float:
    return (dt.datetime.now(dt.timezone.utc) - parse_time(timestamp)).total_seconds()


def expiry_of(meta, spec: SessionSpec) -> dt.datetime:
    return parse_time(meta["creationTimestamp"]) + dt.timedelta(seconds=spec.ttl_seconds)


def control_url(config, name: str) -> str:
    base = config.facade_public_url.rstrip("/")
    ws_base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    # No query string: clients append `?token=`. The relay finds the namespace in the token.
    return f"{ws_base}/session-storage/sessions/{name}/control"


def _parse_spec(spec) -> SessionSpec:
    try:
        return SessionSpec.model_validate(dict(spec))
    except ValueError as exc:
        # The CRD schema should make this unreachable; if it happens, retrying will not help.
        raise kopf.PermanentError(f"invalid spec: {exc}") from exc


async def together(*steps):
    """Await independent steps at once; if one fails, the others are cancelled and its error is
    raised as it is (asyncio.gather would leave them running)."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


# Longer names cannot be label values on the session's Secret and Pod (the CRD refuses them too).
MAX_SESSION_NAME = 63


async def _emit(memo: kopf.Memo, body, flipped: bool, reason: str, message: str, warning: bool = False) -> None:
    if flipped:
        await post_event(memo.core, body, reason, message, warning)


# -- the worker ----------------------------------------------------------------------------


@dataclass
class SessionWorker:
    pod_name: str
    pool: str = ""  # the pool it was claimed from; "" for a session's own cold worker
    created: bool = False
    endpoint: str = ""
    dry_pools: list[str] = field(default_factory=list)  # pools of the profile that had no idle worker
    adopt: object = None  # a claimed worker's adoption (operator/worker_claim.py), still to be awaited

    @property
    def message(self) -> str:
        return claimed_message(self.pod_name, self.pool)


def claimed_message(pod_name: str, pool: str) -> str:
    return f"worker {pod_name} from pool {pool} joined the room"


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
                        pod: dict | None, dry_pools: list[str]) -> SessionWorker:
    """The session's worker: the pooled one it claimed (handed the session now; in the room when
    this returns), or else its own cold pod (operator/worker_claim.py)."""
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
    return SessionWorker(cold_name, created=created, dry_pools=dry_pools)


# -- reconcile -----------------------------------------------------------------------------


def backoff(config, retry: int) -> float:
    """Exponential back-off for LiveKit trouble: base, 2x, 4x ... capped at one minute."""
    return min(config.retry_delay_seconds * 2 ** min(retry, 10), 60.0)


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
    spec = _parse_spec(body["spec"])
    expires_at = expiry_of(meta, spec)
    remaining = (expires_at - dt.datetime.now(dt.timezone.utc)).total_seconds()
    if remaining <= 0:
        await expire_session(body, memo, logger)
        return
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
    # meanwhile, what exists of the session's worker is looked up (reads only).
    lookup = asyncio.create_task(look_up_worker(memo, session))
    try:
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

        await _emit(memo, body, await update_status(memo.custom, namespace, name, unavailable), "LiveKitUnavailable",
                    message, warning=True)
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
    # a cold pod of its own starts, whose readiness it reports (worker_ready_report below).
    worker = await ensure_worker(memo, session, spec, room, secret.data, pooled_pod, dry_pools)
    described["workerPodName"] = worker.pod_name
    lap("pod")

    # 4. One status write for all of it (the pod watcher may already have set WorkerReady), with
    # the events for what this pass brought about and a claimed worker's adoption (owner and
    # labels) at the same time: the worker is in the room already, and the facade answers the
    # POST on this status. A crash in the middle of them can lose an event (best effort, as
    # Kubernetes events are); the status and the adoption are redone by the retried pass.
    status_seen = body.get("status") or {}
    announcements = [
        (r.Condition.ROOM_READY, "RoomCreated", f"LiveKit room {room} exists"),
        (r.Condition.TOKENS_READY, "TokensIssued", f"{spec.publisher_count} publisher and {spec.subscriber_count} "
                                                   f"subscriber tokens in Secret {secret_body['metadata']['name']}"),
    ]
    events = [(reason, message, False) for ctype, reason, message in announcements
              if not condition_true(status_seen, ctype)]
    if worker.dry_pools:
        events.append(("NoIdleWorker", f"no idle worker in pool(s) {', '.join(worker.dry_pools)}; "
                                       "starting a worker of its own", True))
    if worker.pool:
        events.append(("WorkerClaimed", worker.message, False))
    elif worker.created or get_condition(status_seen, r.Condition.WORKER_READY) is None:
        events.append(("WorkerCreated", f"worker pod {worker.pod_name} created", False))
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

    flipped, *_ = await together(update_status(memo.custom, namespace, name, provisioned),
                                 *(post_event(memo.core, body, *event) for event in events),
                                 *filter(None, [worker.adopt]))
    if flipped:
        metrics.WORKER_READY_SECONDS.labels("claimed").observe(_seconds_since(meta["creationTimestamp"]))
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


@kopf.timer(**SESSIONS, interval=30, initial_delay=30, idle=15)
async def session_drift(body, memo: kopf.Memo, logger, **_):
    """The backstop for a worker pod gone or ended behind our back (the pod watcher replaces
    one at once when it sees it go); rooms are lingo_operator.room_watch's job."""
    status = body.get("status") or {}
    if status.get("phase") != r.Phase.READY or body["metadata"].get("deletionTimestamp"):
        return
    await replace_worker_if_gone(memo, body, logger, "Drift")


async def replace_worker_if_gone(memo: kopf.Memo, session, logger, reason: str) -> None:
    """If the session's worker pod is missing or has ended (a pooled worker is never restarted
    in place), delete what is left of it and give the session a worker again."""
    pod_name, namespace = (session.get("status") or {}).get("workerPodName"), session["metadata"]["namespace"]
    try:
        pod = await memo.core.read_namespaced_pod(pod_name, namespace)
        if pod.metadata.deletion_timestamp is None and pod.status.phase not in ("Failed", "Succeeded"):
            return
        await delete_ignoring_missing(lambda n, ns: memo.core.delete_namespaced_pod(n, ns), pod_name, namespace)
        message = f"worker pod {pod_name} ended ({pod.status.phase}); replacing it"
    except ApiException as exc:
        if exc.status != 404:
            raise
        message = f"worker pod {pod_name} is gone; replacing it"
    await post_event(memo.core, session, reason, message, warning=True)
    metrics.DRIFT_REPAIRS.labels("pod").inc()
    await reconcile_session(session, memo, logger)


# -- expiry --------------------------------------------------------------------------------


async def expire_session(body, memo: kopf.Memo, logger, retry: int = 0) -> None:
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    room = r.room_name(meta["uid"])
    try:
        await memo.rooms.delete_room(room)
    except LiveKitUnavailable as exc:
        metrics.LIVEKIT_ERRORS.labels("delete_room").inc()
        raise kopf.TemporaryError(f"cannot delete room of expired session: {exc}", delay=backoff(memo.config, retry))
    for pod in {r.worker_pod_name(name), (body.get("status") or {}).get("workerPodName")} - {None}:
        await delete_ignoring_missing(lambda n, ns: memo.core.delete_namespaced_pod(n, ns), pod, namespace)
    await delete_ignoring_missing(
        lambda n, ns: memo.core.delete_namespaced_secret(n, ns), r.tokens_secret_name(name), namespace
    )

    def expired(status: dict, _):
        status["phase"] = r.Phase.EXPIRED
        status["message"] = "session TTL elapsed; room, tokens and worker were removed"
        for ctype in (r.Condition.ROOM_READY, r.Condition.TOKENS_READY, r.Condition.WORKER_READY):
            set_condition(status, ctype, False, "Expired", "session TTL elapsed")

    await post_event(memo.core, body, "SessionExpired", "TTL elapsed; room, tokens and worker removed")
    await update_status(memo.custom, namespace, name, expired)
    metrics.SESSIONS_EXPIRED.inc()
    logger.info("session %s/%s expired", namespace, name)


async def _sleep_until(stopped, moment: dt.datetime) -> bool:
    """Sleep until `moment`; False if the daemon was stopped (session deleted, operator exiting)."""
    seconds = (moment - dt.datetime.now(dt.timezone.utc)).total_seconds()
    if seconds > 0:
        await stopped.wait(seconds)
    return not stopped


@kopf.daemon(**SESSIONS, cancellation_timeout=10)
async def session_lifetime(stopped, body, memo: kopf.Memo, logger, **_):
    """One sleeping task per session: expire it when its TTL is up, delete it after retention."""
    meta = body["metadata"]
    expires_at = expiry_of(meta, _parse_spec(body["spec"]))
    expired = (body.get("status") or {}).get("phase") == r.Phase.EXPIRED
    retry = 0
    while not expired:
        if not await _sleep_until(stopped, expires_at) or body["metadata"].get("deletionTimestamp"):
            return
        try:
            await expire_session(body, memo, logger, retry)
            expired = True
        except kopf.TemporaryError as exc:
            retry += 1
            await stopped.wait(exc.delay or memo.config.retry_delay_seconds)
        except SessionGone:
            return
    retention = memo.config.expired_retention_seconds
    if retention <= 0 or not await _sleep_until(stopped, expires_at + dt.timedelta(seconds=retention)):
        return
    logger.info("deleting %s/%s: expired more than %ss ago", meta["namespace"], meta["name"], retention)
    try:
        await memo.custom.delete_namespaced_custom_object(
            r.GROUP, r.VERSION, meta["namespace"], r.SESSION_PLURAL, meta["name"]
        )
    except ApiException as exc:
        if exc.status != 404:
            raise


# -- deletion ------------------------------------------------------------------------------


@kopf.on.delete(**SESSIONS)
async def session_deleted(body, memo: kopf.Memo, logger, retry: int, **_):
    """The finalizer's work: remove the LiveKit room. The Secret and Pod go by garbage collection."""
    meta = body["metadata"]
    try:
        await update_status(
            memo.custom, meta["namespace"], meta["name"], lambda s, _: s.__setitem__("phase", r.Phase.TERMINATING)
        )
    except SessionGone:
        return
    try:
        await memo.rooms.delete_room(r.room_name(meta["uid"]))
    except LiveKitUnavailable as exc:
        metrics.LIVEKIT_ERRORS.labels("delete_room").inc()
        raise kopf.TemporaryError(f"room not deleted yet: {exc}", delay=backoff(memo.config, retry))
    metrics.SESSIONS_DELETED.inc()
    logger.info("session %s/%s deleted; room removed", meta["namespace"], meta["name"])


# -- worker readiness ----------------------------------------------------------------------


def worker_condition(pod: dict) -> tuple[bool, str, str]:
    status = pod.get("status") or {}
    phase = status.get("phase", "Pending")
    if pod_ready(pod):
        return True, "WorkerReady", "worker is serving the control API"
    if phase == "Failed":
        return False, "WorkerFailed", status.get("message") or "worker pod failed"
    scheduled = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), None)
    if scheduled and scheduled.get("status") == "False":
        return False, "WorkerUnschedulable", scheduled.get("message") or "no node can run the worker"
    waiting = [
        cs.get("state", {}).get("waiting") for cs in status.get("containerStatuses") or [] if cs.get("state", {}).get("waiting")
    ]
    if waiting:
        return False, waiting[0].get("reason", "WorkerStarting"), waiting[0].get("message") or "worker is starting"
    return False, "WorkerStarting", f"worker pod is {phase}"


@kopf.on.event("", "v1", "pods", **WORKER_PODS)
async def worker_pod_event(event, body, memo: kopf.Memo, logger, **_):
    meta = body["metadata"]
    session_name = meta.get("labels", {}).get(r.LABEL_SESSION)
    if not session_name:
        return
    deleted = event.get("type") == "DELETED"
    if deleted:
        ready, reason, message = False, "WorkerDeleted", "worker pod was deleted"
    else:
        ready, reason, message = worker_condition(body)
    pod_ip = (body.get("status") or {}).get("podIP")
    pool = meta["labels"].get(r.LABEL_POOL)
    if ready and pool:  # a claimed worker: in the room since its claim (the reconciler posts the event)
        reason, message = "WorkerClaimed", claimed_message(meta["name"], pool)
    ended = deleted or (body.get("status") or {}).get("phase") in ("Failed", "Succeeded")
    follow_readiness(memo, logger, body, wanted=not (ended or ready or pool or meta.get("deletionTimestamp")))
    await record_worker_state(memo, logger, meta, pod_ip, ready, reason, message, ended)


async def record_worker_state(memo: kopf.Memo, logger, pod_meta: dict, pod_ip: str | None, ready: bool, reason: str,
                              message: str, ended: bool) -> None:
    """Write what a session's worker pod is doing into the session's WorkerReady condition (with
    an event when it flips), and give the session a new worker if this one ended."""
    namespace, pod_name = pod_meta["namespace"], pod_meta["name"]
    session_name, pool = pod_meta["labels"][r.LABEL_SESSION], pod_meta["labels"].get(r.LABEL_POOL)
    current = False  # whether this pod is the session's worker, in a session that goes on

    def apply(status: dict, session: dict):
        nonlocal current
        if status.get("phase") in TERMINAL_PHASES or session["metadata"].get("deletionTimestamp"):
            return None
        if status.get("workerPodName", pod_name) != pod_name:
            return None  # a worker the session no longer has (a replaced pooled worker going away)
        current = True
        status["workerPodName"] = pod_name
        status["workerEndpoint"] = f"{pod_ip}:{r.WORKER_PORT}" if (pod_ip and ready) else ""
        if ready and condition_true(status, r.Condition.WORKER_READY):
            return None  # already ready: keep how it became so (WorkerClaimed from a pool)
        if ready and not status.get("roomName"):
            return None  # the reconciler's first status write (room, tokens, this worker) comes first
        flipped = set_condition(status, r.Condition.WORKER_READY, ready, reason, message)
        return session if flipped else None

    try:
        session = await update_status(memo.custom, namespace, session_name, apply)
    except SessionGone:
        return
    if session is not None and ready:
        metrics.WORKER_READY_SECONDS.labels("claimed" if pool else "cold").observe(
            _seconds_since(session["metadata"]["creationTimestamp"]))
    if session is not None and not (ready and pool):
        await _emit(memo, session, True, reason, message,
                    warning=not ready and reason not in ("WorkerStarting", "WorkerDeleted"))
    if current and ended:  # the session needs another worker now, not at the next drift check
        latest = await memo.custom.get_namespaced_custom_object(r.GROUP, r.VERSION, namespace, r.SESSION_PLURAL,
                                                                session_name)
        if (latest.get("status") or {}).get("phase") == r.Phase.READY:
            await replace_worker_if_gone(memo, latest, logger, "WorkerReplaced")


# -- readiness reported by the worker -------------------------------------------------------

READY_WAIT_SECONDS = 50  # per request; the worker allows up to 60


def follow_readiness(memo: kopf.Memo, logger, pod: dict, wanted: bool) -> None:
    """A starting cold worker is asked to report its readiness (`GET /readyz?wait=`), answered
    the moment it has joined with engines loaded, so WorkerReady does not wait for the kubelet's
    next probe and its status round trips. The probe still decides the pod's Ready condition."""
    uid, pod_ip = pod["metadata"]["uid"], (pod.get("status") or {}).get("podIP")
    following = memo.readiness_followers.get(uid)
    running = any("running" in (c.get("state") or {}) for c in (pod.get("status") or {}).get("containerStatuses") or [])
    if not wanted or not pod_ip or not running:
        if following and not wanted:
            following.cancel()
        return
    if following is None or following.done():
        memo.readiness_followers[uid] = asyncio.create_task(
            _await_worker_ready(memo, logger, pod["metadata"], pod_ip), name=f"readiness-{pod['metadata']['name']}")


async def _await_worker_ready(memo: kopf.Memo, logger, pod_meta: dict, pod_ip: str) -> None:
    url = f"http://{pod_ip}:{r.WORKER_PORT}/readyz"
    try:
        while True:
            try:
                async with memo.http.get(url, params={"wait": str(READY_WAIT_SECONDS)},
                                         timeout=aiohttp.ClientTimeout(total=READY_WAIT_SECONDS + 10)) as response:
                    if response.status == 200:
                        break
                    if response.status != 503:  # not a worker that can wait: leave it to the probe
                        return
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.1)  # not listening yet (process starting)
        await record_worker_state(memo, logger, pod_meta, pod_ip, True, "WorkerReady",
                                  "worker joined the room with its engines loaded", ended=False)
    except Exception:  # the pod watcher and the probe remain; this is only the fast path
        logger.exception("readiness of worker %s not followed", pod_meta["name"])
    finally:
        memo.readiness_followers.pop(pod_meta["uid"], None)
