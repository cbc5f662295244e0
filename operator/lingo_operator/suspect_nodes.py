"""Nodes where a worker just stopped answering: new and claimed workers go elsewhere for a while.

A node that dies stays Ready in the API until the node controller notices (about 40-50 s), so
until then the scheduler still places pods on it and its idle pooled workers still look ready.
When the liveness probe (worker_liveness.py) gives up on a worker, or a claim cannot even connect
to one (worker_claim.py), its node is suspect for SUSPECT_SECONDS: a session's new worker prefers
other nodes (a preferred node affinity, so a one-node cluster still schedules it), and the idle
workers that were already there (`stale`) are not claimed and not counted by their pool, which
tops up elsewhere. A worker started on a suspect node after it became suspect was put there
knowingly (on a one-node cluster there is nowhere else) and counts as any other.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Callable, Iterable

SUSPECT_SECONDS = 120.0
HOSTNAME_LABEL = "kubernetes.io/hostname"


class SuspectNodes:
    def __init__(self, clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time):
        self._clock, self._wall_clock = clock, wall_clock
        self._until: dict[str, float] = {}  # node -> end of suspicion (monotonic)
        self._since: dict[str, float] = {}  # node -> when it was last marked (epoch seconds)

    def mark(self, node: str | None) -> bool:
        """Suspect `node` from now on; True when it was not suspect already."""
        if not node:
            return False
        new = node not in self.current()
        self._until[node] = self._clock() + SUSPECT_SECONDS
        if new:  # marked again while suspect: the workers started there since still count
            self._since[node] = self._wall_clock()
        return new

    def stale(self, pod: dict) -> bool:
        """Whether `pod` was on its node before the node became suspect (it may be lost with it)."""
        node = pod_node(pod)
        if node not in self.current():
            return False
        created = (pod.get("metadata") or {}).get("creationTimestamp")
        if not created:
            return True
        return datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() < self._since[node]

    def current(self) -> list[str]:
        now = self._clock()
        for node in [n for n, until in self._until.items() if until <= now]:
            del self._until[node], self._since[node]
        return sorted(self._until)


def pod_node(pod: dict) -> str | None:
    return (pod.get("spec") or {}).get("nodeName")


def prefer_other_nodes(pod_spec: dict, nodes: Iterable[str]) -> dict:
    """`pod_spec` with a preferred node affinity away from `nodes` (unchanged when there are none)."""
    nodes = sorted(nodes)
    if not nodes:
        return pod_spec
    term = {"weight": 100, "preference": {"matchExpressions": [
        {"key": HOSTNAME_LABEL, "operator": "NotIn", "values": nodes}]}}
    affinity = dict(pod_spec.get("affinity") or {})
    node_affinity = dict(affinity.get("nodeAffinity") or {})
    node_affinity["preferredDuringSchedulingIgnoredDuringExecution"] = [
        *node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution", []), term]
    affinity["nodeAffinity"] = node_affinity
    return {**pod_spec, "affinity": affinity}
