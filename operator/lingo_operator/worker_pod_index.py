"""What the operator knows of every worker pod, kept from the pod watch (a kopf index): the drift
check (worker_readiness.py) and the liveness probe (worker_liveness.py) read it instead of asking
the API server."""

from __future__ import annotations

from typing import NamedTuple

import kopf

from .watched import WORKER_PODS


class WorkerPodRecord(NamedTuple):
    uid: str
    phase: str | None
    deleting: bool
    ip: str | None  # none until the pod has an address
    node: str | None  # none until it is scheduled

    @property
    def ended(self) -> bool:
        return self.deleting or self.phase in ("Failed", "Succeeded")


@kopf.index("", "v1", "pods", **WORKER_PODS)
def worker_pods(namespace, name, uid, status, meta, spec, **_):
    """(namespace, pod) -> WorkerPodRecord of every worker pod."""
    status = status or {}
    return {(namespace, name): WorkerPodRecord(uid, status.get("phase"), bool(meta.get("deletionTimestamp")),
                                               status.get("podIP"), (spec or {}).get("nodeName"))}
