"""A session's worker that stops answering is replaced within seconds.

When a worker's node is lost, frozen or cut off, Kubernetes keeps its pod Ready until the node
controller notices (about 40 s) and evicts it only after the pod's toleration of the lost node
(worker_pod.NODE_LOSS_TOLERATION_SECONDS); meanwhile the session hears nothing. So the leader
asks every ready session's worker itself, `GET /healthz` on its control port every
PROBE_INTERVAL_SECONDS; after MISSES_ALLOWED answers in a row that do not come, it deletes the
pod at once (grace period 0: a lost node cannot confirm a graceful stop), and the pod watcher
gives the session a new worker (worker_readiness.record_worker_state: WorkerReplaced; an idle
pooled worker when there is one). The new worker joins with the session's translator identity,
so a worker that was only cut off from the operator and is still in the room is disconnected by
LiveKit (an identity is one participant) rather than translating beside it.
"""

from __future__ import annotations

import time

import aiohttp
import kopf

from lingo_api import resources as r

from . import metrics
from .events import post_event
from .kube import delete_ignoring_missing
from .memo import OperatorMemo
from .pool_handlers import suspect_node
from .session_status import condition_true
from .watched import SESSIONS
from .worker_pod_index import WorkerPodRecord

PROBE_INTERVAL_SECONDS = 1.0
# A worker busy translating answers in milliseconds, but a loaded machine can stall one for a
# second or two: three 1 s timeouts in a row replaced live workers on a busy 2-core CI machine.
PROBE_TIMEOUT_SECONDS = 2.0
MISSES_ALLOWED = 3  # a silent worker: about 6-7 s from its last answer to the replacement


def _pod_of(body, worker_pods: kopf.Index) -> WorkerPodRecord | None:
    """The session's worker pod now, while the session goes on and the pod has an address."""
    status, meta = body.get("status") or {}, body["metadata"]
    pod = status.get("workerPodName")
    if status.get("phase") != r.Phase.READY or meta.get("deletionTimestamp") or r.task_ended(status) or not pod:
        return None
    found: list[WorkerPodRecord] = [record for record in worker_pods.get((meta["namespace"], pod), []) if record.ip]
    return found[0] if found else None


async def _answers(http: aiohttp.ClientSession, ip: str) -> bool:
    try:
        async with http.get(f"http://{ip}:{r.WORKER_PORT}/healthz",
                            timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_SECONDS)) as response:
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


@kopf.daemon(**SESSIONS, cancellation_timeout=5)
async def worker_liveness(stopped, body, memo: OperatorMemo, logger, worker_pods: kopf.Index, **_):
    """One probing task per session (kopf keeps `body` current). Only a pod that has served the
    session is probed, and it goes on being probed when the kubelet (if it still runs) calls it
    unready: a frozen worker is unready too, and only this check replaces it. A pod starting in
    its place (the same name, another uid) is left to start."""
    served, missed = None, 0  # uid of the pod seen serving; its answers missed in a row
    silent = False  # the last check got no answer at all before its timeout
    while not stopped:
        # After a check that got only silence (a lost node) the next follows at once, so a lost
        # worker is given up in about MISSES_ALLOWED timeouts; anything else waits the interval
        # (a refused connection may be a worker restarting in place).
        await stopped.wait(0 if silent else PROBE_INTERVAL_SECONDS)
        silent = False
        current = _pod_of(body, worker_pods)
        if current is None:
            served, missed = None, 0
            continue
        uid, ip = current.uid, current.ip
        status = body.get("status") or {}
        pod = status["workerPodName"]
        if condition_true(status, r.Condition.WORKER_READY) and status.get("workerEndpoint") == f"{ip}:{r.WORKER_PORT}":
            served = uid
        if served != uid:
            missed = 0
            continue
        asked = time.monotonic()
        if await _answers(memo.http, ip):
            missed = 0
            continue
        silent = time.monotonic() - asked >= PROBE_TIMEOUT_SECONDS
        missed += 1
        if missed < MISSES_ALLOWED or stopped:
            continue
        message = (f"worker {pod} did not answer {MISSES_ALLOWED} health checks in a row; deleting it to start "
                   "another")
        if silent and suspect_node(memo, current.node):  # a refusing worker's node still answers
            message += f" (and placing new workers away from its node {current.node} for a while)"
        logger.warning(message)
        await post_event(memo.core, body, r.Reason.WORKER_UNRESPONSIVE, message, warning=True)
        metrics.DRIFT_REPAIRS.labels("unresponsive_worker").inc()
        await delete_ignoring_missing(
            lambda n, ns: memo.core.delete_namespaced_pod(n, ns, grace_period_seconds=0), pod,
            body["metadata"]["namespace"])
        served, missed = None, 0
