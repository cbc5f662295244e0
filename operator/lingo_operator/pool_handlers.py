"""kopf handlers for WorkerPools: one task per pool keeps its idle workers topped up
(operator/lingo_operator/worker_pool.py) and its status current; pod events and claims wake it at once.

The task is this module's own, started and stopped from the pool's watch events, not a
kopf daemon: kopf puts a finalizer on every object with a daemon, and a pool's finalizer would
outlive an operator uninstalled together with it (`helm uninstall` deletes both at once).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict

import kopf
from kubernetes_asyncio.client import ApiException

from lingo_api import resources as r
from lingo_api.claim_grant import public_key_text
from lingo_api.kube_time import now_time

from . import metrics
from .events import post_event
from .fencing import FencedOut
from .memo import OperatorMemo
from .worker_pool import reconcile_pool, session_exists_by_uid

POOLS = dict(group=r.GROUP, version=r.VERSION, plural=r.POOL_PLURAL)
# A pool looks again this often even when nothing woke it (a missed event costs at most this).
RESYNC_SECONDS = 5.0

log = logging.getLogger("lingo.operator")


@kopf.on.event(**POOLS)
async def pool_event(event, body, memo: OperatorMemo, **_):
    """Keep the latest version of each pool for its task; start the task, or stop it when the
    pool is deleted (its idle pods go by garbage collection)."""
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    task = memo.pool_tasks.get(key)
    if event.get("type") == "DELETED" or meta.get("deletionTimestamp"):
        memo.pools.pop(key, None)
        if task:
            task.cancel()
        return
    memo.pools[key] = {"metadata": dict(meta), "spec": dict(body.get("spec") or {})}
    memo.pool_wakeups.setdefault(key, asyncio.Event()).set()
    if task is None or task.done():
        memo.pool_tasks[key] = asyncio.create_task(keep_pool(memo, key), name=f"pool-{key[0]}-{key[1]}")


async def stop_pools(memo: OperatorMemo) -> None:
    for task in memo.pool_tasks.values():
        task.cancel()
    await asyncio.gather(*memo.pool_tasks.values(), return_exceptions=True)


async def keep_pool(memo: OperatorMemo, key: tuple[str, str]) -> None:
    wakeup = memo.pool_wakeups.setdefault(key, asyncio.Event())
    written, was_ready, since = None, None, now_time()
    claim_public_key = public_key_text(memo.claim_key)
    try:
        while key in memo.pools:
            wakeup.clear()
            pool = memo.pools[key]
            try:
                counts = await reconcile_pool(memo.core, pool, memo.config, claim_public_key,
                                              lambda ns, uid: session_exists_by_uid(memo.custom, ns, uid),
                                              memo.suspect_nodes)
                for state, value in asdict(counts).items():
                    metrics.POOL_WORKERS.labels(*key, state).set(value)
                min_ready = r.pool_spec(pool)["minReady"]
                ready = counts.ready >= min_ready
                if ready != was_ready:
                    if was_ready is not None:
                        reason = r.Reason.POOL_READY if ready else r.Reason.POOL_DRAINED
                        await post_event(memo.core, _pool_object(pool), reason,
                                         f"{counts.ready} of {min_ready} idle workers ready", warning=not ready)
                    was_ready, since = ready, now_time()
                status = {**asdict(counts), "observedGeneration": pool["metadata"].get("generation"), "conditions": [{
                    "type": r.Condition.READY, "status": str(ready), "lastTransitionTime": since,
                    "reason": r.Reason.MIN_READY_MET if ready else r.Reason.FILLING,
                    "message": f"{counts.ready} of {min_ready} idle workers ready, {counts.starting} starting"}]}
                if status != written:
                    await memo.custom.patch_namespaced_custom_object_status(
                        r.GROUP, r.VERSION, key[0], r.POOL_PLURAL, key[1], {"status": status},
                        _content_type=r.MERGE_PATCH)
                    written = status
            except FencedOut as exc:  # the Lease is in doubt: write nothing until it is renewed
                log.warning("pool %s/%s: %s", *key, exc)
                await asyncio.sleep(1)
                continue
            except ApiException as exc:
                if exc.status == 404 and key not in memo.pools:
                    break
                log.warning("pool %s/%s: %s %s; retrying", *key, exc.status, exc.reason)
                await asyncio.sleep(1)
                continue
            try:
                await asyncio.wait_for(wakeup.wait(), RESYNC_SECONDS)
            except TimeoutError:
                pass
    finally:
        if memo.pool_tasks.get(key) is asyncio.current_task():
            del memo.pool_tasks[key]
        for state in ("ready", "starting", "claimed"):
            try:
                metrics.POOL_WORKERS.remove(*key, state)
            except KeyError:
                pass


def _pool_object(body) -> dict:
    return {"apiVersion": r.API_VERSION, "kind": r.POOL_KIND, "metadata": dict(body["metadata"])}


@kopf.on.event("", "v1", "pods", labels={r.LABEL_POOL: kopf.PRESENT})
async def pool_pod_event(body, memo: OperatorMemo, **_):
    """A pooled worker changed (ready, failed, claimed, deleted): its pool looks now."""
    wake_pool(memo, body["metadata"]["namespace"], body["metadata"]["labels"][r.LABEL_POOL])


def wake_pool(memo: OperatorMemo, namespace: str, pool: str) -> None:
    """Tell a pool's task to look again now (a worker was claimed, or one of its pods changed)."""
    event = memo.pool_wakeups.get((namespace, pool))
    if event is not None:
        event.set()


def suspect_node(memo: OperatorMemo, node: str | None) -> bool:
    """Mark `node` suspect (suspect_nodes.py); when it was not already, every pool's task looks
    again now, to top up on other nodes. True when it is newly suspect."""
    if not memo.suspect_nodes.mark(node):
        return False
    for event in memo.pool_wakeups.values():
        event.set()
    return True
