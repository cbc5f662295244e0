"""Claiming a pooled worker for a session (the pools: operator/lingo_operator/worker_pool.py).

1. Claim: an idle, ready pod of a pool of the session's profile, in the session's namespace, is
   relabelled `pool-state=claimed, claimed-by=<session uid>` with its resourceVersion as a
   precondition: of two sessions racing for one pod, one write wins and the other gets 409 and
   tries the next pod. The label is the claim's record, so an operator that restarts finds it.
2. Hand over: the operator calls the worker's `POST /claim` (worker/lingo_worker/claim.py) with
   the session and a grant signed for that pod and body (lingo_api/claim_grant.py); the worker
   joins the room and then answers.
3. Adopt: the pod becomes the session's (its owner reference and labels), and leaves the pool's
   count of idle workers for good.
A worker that fails the hand-over is deleted (it may hold the session's tokens) and the caller
starts a cold worker instead.
"""

from __future__ import annotations

import base64
import errno
import json
import logging

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kubernetes_asyncio.client import ApiException, CoreV1Api

from lingo_api import claim_grant
from lingo_api import resources as r
from lingo_api.faults import crash_point

from .kube import delete_ignoring_missing
from .ownership import owner_reference, session_labels
from .room_watch import has_room
from .suspect_nodes import SuspectNodes
from .worker_pod import SAFE_TO_EVICT
from .worker_pool import pod_ready

log = logging.getLogger("lingo.operator")

HANDOVER_TIMEOUT_SECONDS = 15
# A live worker accepts a connection at once; one on a lost node never does.
CONNECT_TIMEOUT_SECONDS = 2


class HandoverFailed(Exception):
    pass


class WorkerUnreachable(HandoverFailed):
    """No answer to a connection at all: the worker's node may be lost (suspect_nodes.py)."""


def claimed_message(pod_name: str, pool: str) -> str:
    return f"worker {pod_name} from pool {pool} joined the room"


def _matches(pod: dict, profile: str, pool_profiles: dict[str, str]) -> bool:
    meta = pod["metadata"]
    return (not meta.get("deletionTimestamp") and pod_ready(pod)
            and pool_profiles.get(meta["labels"].get(r.LABEL_POOL, "")) == profile)


async def _pods(core: CoreV1Api, namespace: str, selector: str) -> list[dict]:
    listed = await core.list_namespaced_pod(namespace, label_selector=selector)
    return [core.api_client.sanitize_for_serialization(p) for p in listed.items]


async def pool_profiles(custom, namespace: str) -> dict[str, str]:
    """Pool name -> worker profile, for the pools of a namespace (none where the WorkerPool CRD
    is not installed)."""
    try:
        listed = await custom.list_namespaced_custom_object(r.GROUP, r.VERSION, namespace, r.POOL_PLURAL)
    except ApiException as exc:
        if exc.status == 404:
            return {}
        raise
    return {p["metadata"]["name"]: r.pool_spec(p)["profile"] for p in listed.get("items", [])
            if not p["metadata"].get("deletionTimestamp")}


async def claimed_pod_of(core: CoreV1Api, session: dict) -> dict | None:
    """The pooled pod this session claimed earlier (an operator restart or a retry), if any."""
    meta = session["metadata"]
    pods = await _pods(core, meta["namespace"], f"{r.LABEL_CLAIMED_BY}={meta['uid']}")
    return next((p for p in pods if not p["metadata"].get("deletionTimestamp")), None)


async def claim_idle_pod(core: CoreV1Api, session: dict, profile: str, profiles: dict[str, str],
                         suspect_nodes: SuspectNodes | None = None) -> dict | None:
    """Step 1: claim one idle ready pod of a matching pool, oldest first, none that was on a node
    before it became suspect; None if there is none."""
    meta = session["metadata"]
    candidates = [p for p in await _pods(core, meta["namespace"], f"{r.LABEL_POOL_STATE}={r.POOL_STATE_IDLE}")
                  if _matches(p, profile, profiles) and not (suspect_nodes and suspect_nodes.stale(p))]
    for pod in sorted(candidates, key=lambda p: p["metadata"]["creationTimestamp"]):
        patch = {"metadata": {"resourceVersion": pod["metadata"]["resourceVersion"], "labels": {
            r.LABEL_POOL_STATE: r.POOL_STATE_CLAIMED, r.LABEL_CLAIMED_BY: meta["uid"]}}}
        try:
            claimed = await core.patch_namespaced_pod(pod["metadata"]["name"], meta["namespace"], patch,
                                                      _content_type=r.MERGE_PATCH)
        except ApiException as exc:
            if exc.status in (404, 409):  # another session got it first, or it is gone
                continue
            raise
        return core.api_client.sanitize_for_serialization(claimed)
    return None


async def hand_over(core: CoreV1Api, http: aiohttp.ClientSession, claim_key: Ed25519PrivateKey, session: dict,
                    pod: dict, room: str, tokens_secret_data: dict[str, str], source_language: str,
                    target_languages: list[str]) -> None:
    """Step 2 for a pod this session has claimed."""
    meta, name = session["metadata"], pod["metadata"]["name"]
    namespace = meta["namespace"]
    crash_point("claim.labelled")
    try:
        await _call_claim(http, claim_key, session, pod, room, tokens_secret_data, source_language, target_languages)
    except HandoverFailed:
        await delete_ignoring_missing(lambda n, ns: core.delete_namespaced_pod(n, ns), name, namespace)
        raise


async def adopt(core: CoreV1Api, session: dict, pod: dict) -> None:
    """Step 3, once the worker is in the room: the pod becomes the session's."""
    labels = {**session_labels(session, r.WORKER_COMPONENT), r.LABEL_POOL_STATE: r.POOL_STATE_CLAIMED}
    # A merge patch replaces the owner list (a strategic one would add the session beside the pool).
    await core.patch_namespaced_pod(pod["metadata"]["name"], session["metadata"]["namespace"], {"metadata": {
        "labels": labels, "annotations": {SAFE_TO_EVICT: "false"}, "ownerReferences": [owner_reference(session)]}},
        _content_type=r.MERGE_PATCH)


async def _call_claim(http, claim_key, session, pod, room, tokens_secret_data, source_language, target_languages):
    meta = session["metadata"]
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        raise HandoverFailed(f"worker {pod['metadata']['name']} has no IP")
    clients = r.client_tokens_from_secret(tokens_secret_data)
    body = {
        "session": meta["name"], "namespace": meta["namespace"], "room": room,
        "worker_token": base64.b64decode(tokens_secret_data[r.SECRET_WORKER_TOKEN]).decode(),
        "client_tokens": [*clients["publisher"], *clients["subscriber"]],
        "source_language": source_language, "target_languages": target_languages,
        "join_room": has_room(session),
    }
    payload = json.dumps(body).encode()
    grant = claim_grant.sign(claim_key, pod["metadata"]["uid"], payload)
    try:
        async with http.post(f"http://{ip}:{r.WORKER_PORT}/claim", data=payload,
                             headers={"Authorization": f"Bearer {grant}", "Content-Type": "application/json"},
                             timeout=aiohttp.ClientTimeout(total=HANDOVER_TIMEOUT_SECONDS,
                                                           sock_connect=CONNECT_TIMEOUT_SECONDS)) as response:
            if response.status != 200:
                answer = await response.text()
                raise HandoverFailed(f"worker {pod['metadata']['name']} answered {response.status}: {answer[:200]}")
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
        # Silence or no route: its node may be lost. A refused connection is a worker gone from a
        # node that answers.
        silent = isinstance(exc, aiohttp.ConnectionTimeoutError) or getattr(exc, "errno", None) in (
            errno.EHOSTUNREACH, errno.ENETUNREACH)
        kind = WorkerUnreachable if silent else HandoverFailed
        raise kind(f"worker {pod['metadata']['name']} unreachable: {type(exc).__name__}") from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise HandoverFailed(f"worker {pod['metadata']['name']} failed its hand-over: {type(exc).__name__}") from exc
