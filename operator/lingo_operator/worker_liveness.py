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

import aiohttp
import kopf

from lingo_api import resources as r

from . import metrics
from .events import post_event
from .kube import delete_ignoring_missing
from .memo import OperatorMemo
from .session_status import condition_true, task_ended
from .watched import SESSIONS

PROBE_INTERVAL_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = 2.0  # a worker busy translating answers in milliseconds (its event loop is free)
MISSES_ALLOWED = 3  # about 6-12 s from the last answer to the replacement


def _serving(body) -> tuple[str, str] | None:
    """(pod, endpoint) of the worker the session is being served by, if any."""
    status = body.get("status") or {}
    if (status.get("phase") != r.Phase.READY or body["metadata"].get("deletionTimestamp") or task_ended(status)
            or not condition_true(status, r.Condition.WORKER_READY)):
        return None
    pod, endpoint = status.get("workerPodName"), status.get("workerEndpoint")
    return (pod, endpoint) if pod and endpoint else None


async def _answers(http: aiohttp.ClientSession, endpoint: str) -> bool:
    try:
        async with http.get(f"http://{endpoint}/healthz",
                            timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_SECONDS)) as response:
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


@kopf.daemon(**SESSIONS, cancellation_timeout=5)
async def worker_liveness(stopped, body, memo: OperatorMemo, logger, **_):
    """One probing task per session (kopf keeps `body` current)."""
    missed: dict[str, int] = {}  # pod -> answers missed in a row
    while not stopped:
        await stopped.wait(PROBE_INTERVAL_SECONDS)
        serving = _serving(body)
        if serving is None:
            missed.clear()
            continue
        pod, endpoint = serving
        if await _answers(memo.http, endpoint):
            missed.clear()
            continue
        missed = {pod: missed.get(pod, 0) + 1}
        if missed[pod] < MISSES_ALLOWED or stopped:
            continue
        namespace = body["metadata"]["namespace"]
        message = (f"worker {pod} did not answer {MISSES_ALLOWED} health checks in a row "
                   f"({PROBE_INTERVAL_SECONDS:.0f} s apart); deleting it to start another")
        logger.warning(message)
        await post_event(memo.core, body, r.Reason.WORKER_UNRESPONSIVE, message, warning=True)
        metrics.DRIFT_REPAIRS.labels("unresponsive_worker").inc()
        await delete_ignoring_missing(
            lambda n, ns: memo.core.delete_namespaced_pod(n, ns, grace_period_seconds=0), pod, namespace)
        missed.clear()
