"""A session's worker after it is made: its readiness into the session's WorkerReady condition
(from pod events, and from the worker itself for a starting cold worker), and a new worker when
it goes away (at once on the pod's event, and by a 30 s drift check as the backstop)."""

from __future__ import annotations

import asyncio

import aiohttp
import kopf
from kubernetes_asyncio.client import ApiException

from lingo_api import resources as r
from lingo_api.kube_time import seconds_since

from . import metrics
from .events import post_event
from .kube import delete_ignoring_missing
from .memo import OperatorMemo
from .session_handlers import reconcile_session
from .session_status import SessionGone, TERMINAL_PHASES, condition_true, set_condition, update_status
from .watched import SESSIONS, WORKER_PODS
from .worker_claim import claimed_message
from .worker_pod import MODEL_DELIVERY_CONTAINER, models_being_fetched
from .worker_pod_index import WorkerPodRecord
from .worker_pool import pod_ready


def worker_condition(pod: dict) -> tuple[bool, str, str]:
    status = pod.get("status") or {}
    phase = status.get("phase", "Pending")
    if pod_ready(pod):
        return True, r.Reason.WORKER_READY, "worker is serving the control API"
    if phase == "Failed":
        return False, r.Reason.WORKER_FAILED, status.get("message") or "worker pod failed"
    if phase == "Succeeded" and (pod.get("metadata") or {}).get("deletionTimestamp"):
        # Its exit 0 answered the deletion's SIGTERM (a drain, an eviction), not the end of its task.
        return False, r.Reason.WORKER_DELETED, "worker pod was deleted"
    if phase == "Succeeded":  # otherwise a worker exits 0 only when its task ended
        return False, r.Reason.TASK_ENDED, "the translation task ended; the worker exited and freed its resources"
    scheduled = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), None)
    if scheduled and scheduled.get("status") == "False":
        return False, r.Reason.WORKER_UNSCHEDULABLE, scheduled.get("message") or "no node can run the worker"
    delivery = next((cs for cs in status.get("initContainerStatuses") or [] if cs.get("name") == MODEL_DELIVERY_CONTAINER),
                    None)
    if delivery and not delivery.get("state", {}).get("terminated"):
        failed = (delivery.get("lastState") or {}).get("terminated")
        if failed and failed.get("exitCode"):
            return False, r.Reason.MODEL_DELIVERY_FAILED, (failed.get("message") or "model delivery failed").strip()[-500:]
        return False, r.Reason.FETCHING_MODELS, f"waiting for its models: {models_being_fetched(pod)}"
    waiting = [
        cs.get("state", {}).get("waiting") for cs in status.get("containerStatuses") or [] if cs.get("state", {}).get("waiting")
    ]
    if waiting:
        return (False, waiting[0].get("reason", r.Reason.WORKER_STARTING),
                waiting[0].get("message") or "worker is starting")
    return False, r.Reason.WORKER_STARTING, f"worker pod is {phase}"


@kopf.on.event("", "v1", "pods", **WORKER_PODS)
async def worker_pod_event(event, body, memo: OperatorMemo, logger, **_):
    meta = body["metadata"]
    session_name = meta.get("labels", {}).get(r.LABEL_SESSION)
    if not session_name:
        return
    deleted = event.get("type") == "DELETED"
    if deleted:
        ready, reason, message = False, r.Reason.WORKER_DELETED, "worker pod was deleted"
    else:
        ready, reason, message = worker_condition(body)
    pod_ip = (body.get("status") or {}).get("podIP")
    pool = meta["labels"].get(r.LABEL_POOL)
    if ready and pool:  # a claimed worker: in the room since its claim (the reconciler posts the event)
        reason, message = r.Reason.WORKER_CLAIMED, claimed_message(meta["name"], pool)
    ended = deleted or (body.get("status") or {}).get("phase") in ("Failed", "Succeeded")
    follow_readiness(memo, logger, body, wanted=not (ended or ready or pool or meta.get("deletionTimestamp")))
    await record_worker_state(memo, logger, meta, pod_ip, ready, reason, message, ended)


async def record_worker_state(memo: OperatorMemo, logger, pod_meta: dict, pod_ip: str | None, ready: bool, reason: str,
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
        if r.task_ended(status):
            return None  # the session's worker is done for good; its pod going away changes nothing
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
            seconds_since(session["metadata"]["creationTimestamp"]))
    if session is not None and not (ready and pool):
        await post_event(memo.core, session, reason, message,
                         warning=not ready and reason not in (r.Reason.WORKER_STARTING, r.Reason.WORKER_DELETED,
                                                              r.Reason.TASK_ENDED, r.Reason.FETCHING_MODELS))
    if current and ended:  # the session needs another worker now, not at the next drift check
        latest = await memo.custom.get_namespaced_custom_object(r.GROUP, r.VERSION, namespace, r.SESSION_PLURAL,
                                                                session_name)
        if (latest.get("status") or {}).get("phase") == r.Phase.READY:
            await replace_worker_if_gone(memo, latest, logger, r.Reason.WORKER_REPLACED)


# -- readiness reported by the worker -------------------------------------------------------

READY_WAIT_SECONDS = 50  # per request; the worker allows up to 60


def follow_readiness(memo: OperatorMemo, logger, pod: dict, wanted: bool) -> None:
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


async def _await_worker_ready(memo: OperatorMemo, logger, pod_meta: dict, pod_ip: str) -> None:
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
        await record_worker_state(memo, logger, pod_meta, pod_ip, True, r.Reason.WORKER_READY,
                                  "worker joined the room with its engines loaded", ended=False)
    except Exception:  # the pod watcher and the probe remain; this is only the fast path
        logger.exception("readiness of worker %s not followed", pod_meta["name"])
    finally:
        memo.readiness_followers.pop(pod_meta["uid"], None)


# -- replacing a worker that went away -----------------------------------------------------


@kopf.timer(**SESSIONS, interval=30, initial_delay=30, idle=15)
async def session_drift(body, memo: OperatorMemo, logger, worker_pods: kopf.Index, **_):
    """The backstop for a worker pod gone or ended behind our back (the pod watcher replaces
    one at once when it sees it go); rooms are lingo_operator.room_watch's job. Answered from
    the pod index: the API server is asked only about a pod the index shows missing or ended."""
    status = body.get("status") or {}
    if status.get("phase") != r.Phase.READY or body["metadata"].get("deletionTimestamp"):
        return
    seen: list[WorkerPodRecord] = list(worker_pods.get((body["metadata"]["namespace"], status.get("workerPodName")), []))
    if seen and not any(record.ended for record in seen):
        return
    await replace_worker_if_gone(memo, body, logger, r.Reason.DRIFT)


async def replace_worker_if_gone(memo: OperatorMemo, session, logger, reason: str) -> None:
    """If the session's worker pod is missing or has ended (a pooled worker is never restarted
    in place), delete what is left of it and give the session a worker again."""
    pod_name, namespace = (session.get("status") or {}).get("workerPodName"), session["metadata"]["namespace"]
    if r.task_ended(session.get("status") or {}):
        return
    try:
        pod = await memo.core.read_namespaced_pod(pod_name, namespace)
        if pod.metadata.deletion_timestamp is None and pod.status.phase != "Failed":
            return  # serving, or done because its task ended (recorded by the pod watcher, checked above)
        await delete_ignoring_missing(lambda n, ns: memo.core.delete_namespaced_pod(n, ns), pod_name, namespace)
        message = f"worker pod {pod_name} ended ({pod.status.phase}); replacing it"
    except ApiException as exc:
        if exc.status != 404:
            raise
        message = f"worker pod {pod_name} is gone; replacing it"
    await post_event(memo.core, session, reason, message, warning=True)
    metrics.DRIFT_REPAIRS.labels("pod").inc()
    await reconcile_session(session, memo, logger)
