"""WorkerPools: idle translation workers, engines loaded, waiting for sessions to claim them.

A pool keeps `minReady` idle workers (ready or starting) and at most `maxReady`; a session
claims one (operator/lingo_operator/worker_claim.py) and the pool starts another. Idle pods are owned by their
pool; a claimed pod is handed to its session (owner reference and session labels), so deleting
a pool removes its idle workers and leaves the claimed ones serving their sessions.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
from dataclasses import dataclass

from kubernetes_asyncio.client import ApiException, CoreV1Api

from lingo_api import resources as r
from lingo_api import worker_env

from .config import OperatorConfig
from .kube import delete_ignoring_missing
from .ownership import owner_reference
from .suspect_nodes import SuspectNodes, prefer_other_nodes
from .worker_pod import METRICS_ANNOTATIONS, SAFE_TO_EVICT, with_node_loss_tolerations, worker_pod_spec

log = logging.getLogger("lingo.operator")

# Pod spec fields a pool's template may set (everything that places or sizes a worker); the
# container, probes and security context stay the operator's, except the "worker" container's
# fields merged in `pooled_worker_manifest`.
TEMPLATE_POD_FIELDS = ("nodeSelector", "tolerations", "affinity", "runtimeClassName", "priorityClassName",
                       "topologySpreadConstraints", "serviceAccountName", "schedulerName", "imagePullSecrets",
                       "terminationGracePeriodSeconds", "dnsConfig", "hostAliases", "volumes")


def pool_labels(pool_name: str) -> dict[str, str]:
    return {r.LABEL_MANAGED_BY: r.MANAGED_BY, r.LABEL_COMPONENT: r.WORKER_COMPONENT, r.LABEL_POOL: pool_name}


def pooled_worker_manifest(pool: dict, config: OperatorConfig, claim_public_key: str) -> dict:
    """An idle worker of the pool. `claim_public_key` verifies the operator's claim grants
    (lingo_api/claim_grant.py); it is part of the template, so a new key replaces idle workers."""
    meta, spec = pool["metadata"], r.pool_spec(pool)
    name = meta["name"]
    env = [
        {"name": worker_env.POOL, "value": name},
        {"name": worker_env.SOURCE_LANGUAGE, "value": spec["sourceLanguage"]},
        {"name": worker_env.TARGET_LANGUAGES, "value": ",".join(spec["targetLanguages"])},
        {"name": worker_env.CLAIM_PUBLIC_KEY, "value": claim_public_key},
        {"name": worker_env.POD_UID, "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
    ]
    pod_spec = worker_pod_spec(spec["profile"], config, env)
    # One session per worker: a claimed worker that exits is replaced by the session's
    # reconciler, never restarted in place (it would come back idle, with no session).
    pod_spec["restartPolicy"] = "Never"
    template = copy.deepcopy(spec.get("template") or {})
    template_spec = template.get("spec") or {}
    for field in TEMPLATE_POD_FIELDS:
        if field in template_spec:
            pod_spec[field] = template_spec[field]
    pod_spec["tolerations"] = with_node_loss_tolerations(pod_spec.get("tolerations") or [])
    worker = pod_spec["containers"][0]
    for container in template_spec.get("containers") or []:
        if container.get("name") == worker["name"]:
            extra_env = container.pop("env", [])
            worker.update({k: v for k, v in container.items() if k in ("image", "imagePullPolicy", "resources")})
            worker["env"] = [*worker["env"], *extra_env]
    template_meta = template.get("metadata") or {}
    labels = {**(template_meta.get("labels") or {}), **pool_labels(name), r.LABEL_POOL_STATE: r.POOL_STATE_IDLE}
    annotations = {**(template_meta.get("annotations") or {}), **METRICS_ANNOTATIONS, SAFE_TO_EVICT: "true"}
    digest = hashlib.sha256(json.dumps([labels, annotations, pod_spec], sort_keys=True).encode()).hexdigest()[:16]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": f"{name}-pool-",
            "namespace": meta["namespace"],
            "labels": {**labels, r.LABEL_POOL_TEMPLATE: digest},
            "annotations": annotations,
            "ownerReferences": [owner_reference(pool, r.POOL_KIND)],
        },
        "spec": pod_spec,
    }


def pod_ready(pod: dict) -> bool:
    status = pod.get("status") or {}
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def owned_by_pool(pod: dict) -> bool:
    return any(ref.get("kind") == r.POOL_KIND for ref in pod["metadata"].get("ownerReferences") or [])


@dataclass
class PoolCounts:
    ready: int
    starting: int
    claimed: int


@dataclass
class PoolPlan:
    """What one pass over a pool does: delete `doomed`, start `deficit` workers; and the counts after."""

    doomed: list[dict]
    deficit: int
    counts: PoolCounts


def abandoned_claims(pods: list[dict]) -> list[dict]:
    """Claimed pods still owned by their pool (never handed over): if the claiming session is gone,
    nobody will use them. Whether it is gone is asked of the API server (reconcile_pool)."""
    return [p for p in pods if not p["metadata"].get("deletionTimestamp") and owned_by_pool(p)
            and p["metadata"]["labels"].get(r.LABEL_POOL_STATE) == r.POOL_STATE_CLAIMED]


def plan_pool(pods: list[dict], spec: dict, template: str, orphaned: list[dict]) -> PoolPlan:
    """The pool's idle workers brought to between minReady and maxReady: `pods` are the pool's,
    `spec` its spec with defaults (r.pool_spec), `template` the hash current workers are made from,
    `orphaned` the claims whose session is gone."""
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    idle = [p for p in live if p["metadata"]["labels"].get(r.LABEL_POOL_STATE) == r.POOL_STATE_IDLE]
    claimed = [p for p in live if p["metadata"]["labels"].get(r.LABEL_POOL_STATE) == r.POOL_STATE_CLAIMED]
    # Ended idle workers, and idle workers made from an older template (the pool's spec or the
    # operator's settings changed since: a new LiveKit URL, image, resources...).
    doomed = [p for p in idle if (p.get("status") or {}).get("phase") in ("Failed", "Succeeded")
              or p["metadata"]["labels"].get(r.LABEL_POOL_TEMPLATE) != template]
    doomed += [p for p in orphaned if p in claimed]
    idle = [p for p in idle if p not in doomed]
    ready = [p for p in idle if pod_ready(p)]
    starting = [p for p in idle if not pod_ready(p)]
    surplus = len(idle) - spec["maxReady"]
    if surplus > 0:  # starting ones first, then the youngest
        doomed += (starting + sorted(ready, key=lambda p: p["metadata"]["creationTimestamp"], reverse=True))[:surplus]
    # A worker being handed over (claimed, not yet its session's) still holds its place: the
    # replacement starts once the hand-over is done, not beside it on the same CPUs.
    handing_over = [p for p in claimed if owned_by_pool(p) and p not in doomed]
    deficit = max(0, spec["minReady"] - (len(idle) + len(handing_over) - max(surplus, 0)))
    remaining = lambda pods: len([p for p in pods if p not in doomed])  # noqa: E731
    return PoolPlan(doomed, deficit, PoolCounts(ready=remaining(ready), starting=remaining(starting) + deficit,
                                                claimed=remaining(claimed)))


async def reconcile_pool(core: CoreV1Api, pool: dict, config: OperatorConfig, claim_public_key: str,
                         session_exists, suspect_nodes: SuspectNodes | None = None) -> PoolCounts:
    """Bring the pool's idle workers to between minReady and maxReady (plan_pool); returns the counts.

    `session_exists(namespace, uid)` -> bool, for claims abandoned halfway (the claiming session
    was deleted during its hand-over). Pods that were on a node before it became suspect are left
    out of the plan, as if gone: the pool tops up on other nodes (suspect_nodes.py).
    """
    meta = pool["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    listed = await core.list_namespaced_pod(namespace, label_selector=f"{r.LABEL_POOL}={name}")
    pods = [pod for p in listed.items
            if not (suspect_nodes and suspect_nodes.stale(pod := core.api_client.sanitize_for_serialization(p)))]
    orphaned = [p for p in abandoned_claims(pods)
                if not await session_exists(namespace, p["metadata"]["labels"].get(r.LABEL_CLAIMED_BY, ""))]
    manifest = pooled_worker_manifest(pool, config, claim_public_key)
    manifest["spec"] = prefer_other_nodes(manifest["spec"], suspect_nodes.current() if suspect_nodes else [])
    plan = plan_pool(pods, r.pool_spec(pool), manifest["metadata"]["labels"][r.LABEL_POOL_TEMPLATE], orphaned)
    for pod in plan.doomed:
        log.info("pool %s/%s: deleting worker %s", namespace, name, pod["metadata"]["name"])
        await delete_ignoring_missing(lambda n, ns: core.delete_namespaced_pod(n, ns), pod["metadata"]["name"],
                                      namespace)
    if plan.deficit:
        results = await asyncio.gather(*(core.create_namespaced_pod(namespace, manifest) for _ in range(plan.deficit)),
                                       return_exceptions=True)
        failures = [res for res in results if isinstance(res, Exception)]
        if failures:
            raise failures[0]
    return plan.counts


async def session_exists_by_uid(custom, namespace: str, uid: str) -> bool:
    """Whether a StreamingSession with this uid is in the namespace (and not being deleted)."""
    try:
        listed = await custom.list_namespaced_custom_object(r.GROUP, r.VERSION, namespace, r.SESSION_PLURAL)
    except ApiException:
        return True  # unsure: keep the pod
    return any(s["metadata"]["uid"] == uid and not s["metadata"].get("deletionTimestamp")
               for s in listed.get("items", []))
