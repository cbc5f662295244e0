"""Kubernetes Events about sessions, written synchronously.

kopf's own `kopf.info`/`kopf.warn` queue an event and post it later, so an operator that dies
right after a status write loses the events of that transition. The reconciler instead posts
a transition's events *before* it writes the status that records it: a crash in between
means the transition is redone and its events posted again (at least once, never lost).
"""

from __future__ import annotations

import logging
import secrets

from kubernetes_asyncio.client import ApiException, CoreV1Api

from lingo_api.kube_time import now_time

log = logging.getLogger("lingo.operator")
COMPONENT = "lingo-operator"


async def post_event(core: CoreV1Api, obj: dict, reason: str, message: str, warning: bool = False) -> None:
    meta = obj["metadata"]
    now = now_time()
    event = {
        "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "name": meta["name"],
                           "namespace": meta["namespace"], "uid": meta.get("uid")},
        "reason": reason,
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        await core.create_namespaced_event(meta["namespace"], event)
    except ApiException as exc:  # an event is worth a retry of the reconcile only if it matters
        if exc.status in (403, 404, 422):
            log.warning("event %s for %s/%s not posted: %s", reason, meta["namespace"], meta["name"], exc.reason)
            return
        raise
