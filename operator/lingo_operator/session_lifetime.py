"""A session's end: expiry when its TTL is up (one sleeping daemon per session), deletion of the
expired after their retention, and the finalizer's work when a session is deleted."""

from __future__ import annotations

import datetime as dt

import kopf
from kubernetes_asyncio.client import ApiException

from lingo_api import resources as r
from lingo_api.kube_time import parse_time

from . import metrics
from .events import post_event
from .kube import delete_ignoring_missing
from .livekit_rooms import LiveKitUnavailable
from .memo import OperatorMemo
from .room_watch import has_room
from .session_plan import backoff, expiry_of, parse_spec
from .session_status import SessionGone, set_condition, update_status
from .watched import SESSIONS


async def expire_session(body, memo: OperatorMemo, logger, retry: int = 0) -> None:
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    room = r.room_name(meta["uid"])
    try:
        if has_room(body):
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
            set_condition(status, ctype, False, r.Reason.EXPIRED, "session TTL elapsed")

    await post_event(memo.core, body, r.Reason.SESSION_EXPIRED, "TTL elapsed; room, tokens and worker removed")
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
async def session_lifetime(stopped, body, memo: OperatorMemo, logger, **_):
    """One sleeping task per session: expire it when its TTL is up, delete it after retention."""
    meta = body["metadata"]
    expires_at = expiry_of(meta, parse_spec(body["spec"]))
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


@kopf.daemon(**SESSIONS, annotations={r.ANNOTATION_DELIVERY: r.DELIVERY_PENDING}, cancellation_timeout=5)
async def undelivered_session(stopped, body, memo: OperatorMemo, logger, **_):
    """A session whose facade never handed it to its client (it died mid-create, or the client's
    create timed out while etcd was down and landed later) is deleted once it has been pending
    undelivered_grace_seconds: nobody holds its tokens, and it would keep a quota slot until its
    TTL. kopf stops this daemon as soon as the facade marks the session delivered."""
    meta = body["metadata"]
    grace = dt.timedelta(seconds=memo.config.undelivered_grace_seconds)
    if not await _sleep_until(stopped, parse_time(meta["creationTimestamp"]) + grace) or meta.get("deletionTimestamp"):
        return
    message = f"no client received this session within {grace.total_seconds():g}s of its creation; deleting it"
    await post_event(memo.core, body, r.Reason.UNDELIVERED, message, warning=True)
    logger.info("deleting %s/%s: never delivered to its client", meta["namespace"], meta["name"])
    metrics.SESSIONS_UNDELIVERED.inc()
    await delete_ignoring_missing(lambda n, ns: memo.custom.delete_namespaced_custom_object(
        r.GROUP, r.VERSION, ns, r.SESSION_PLURAL, n), meta["name"], meta["namespace"])


# -- deletion ------------------------------------------------------------------------------


@kopf.on.delete(**SESSIONS)
async def session_deleted(body, memo: OperatorMemo, logger, retry: int, **_):
    """The finalizer's work: remove the LiveKit room. The Secret and Pod go by garbage collection."""
    meta = body["metadata"]
    try:
        await update_status(
            memo.custom, meta["namespace"], meta["name"], lambda s, _: s.__setitem__("phase", r.Phase.TERMINATING)
        )
    except SessionGone:
        return
    try:
        if has_room(body):
            await memo.rooms.delete_room(r.room_name(meta["uid"]))
    except LiveKitUnavailable as exc:
        metrics.LIVEKIT_ERRORS.labels("delete_room").inc()
        raise kopf.TemporaryError(f"room not deleted yet: {exc}", delay=backoff(memo.config, retry))
    metrics.SESSIONS_DELETED.inc()
    logger.info("session %s/%s deleted; room removed", meta["namespace"], meta["name"])
