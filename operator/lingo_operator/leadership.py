"""Leader election for operator replicas, on a coordination.k8s.io Lease.

One replica holds the Lease and runs kopf; the others wait. The holder renews the Lease every
`retry` seconds; a replica that cannot renew within `renew_deadline` stops reconciling and exits
(its pod restarts as a standby). A standby takes the Lease once its record has not changed for
`lease_duration` seconds, timed on its own clock from when it last saw the record change (as
client-go does), so clocks that disagree between nodes do not matter. A leader that stops
cleanly hands the Lease back at once.

Defaults are client-go's: a 15 s lease, a 10 s renew deadline, 2 s between tries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from kubernetes_asyncio.client import ApiException, CoordinationV1Api

from lingo_api.failure_text import describe_failure
from lingo_api.kube_time import now_micro_time

log = logging.getLogger("lingo.operator.leadership")


@dataclass(frozen=True)
class LeaseTiming:
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry: float = 2.0


class LeaderElection:
    def __init__(self, api: CoordinationV1Api, namespace: str, name: str, identity: str,
                 timing: LeaseTiming = LeaseTiming()):
        self.api, self.namespace, self.name, self.identity, self.timing = api, namespace, name, identity, timing
        self._seen: tuple[str, str] | None = None  # (holder, renewTime) last observed
        self._seen_at = 0.0  # monotonic time it was first observed
        self.leading = False
        self.lost = False  # set when renewing failed (not when the Lease was released)
        self._released = False
        self._renewed_at = 0.0  # monotonic time of the last successful acquire or renewal

    async def acquire(self) -> None:
        """Return once this replica holds the Lease."""
        announced = None
        while not await self._try_acquire_or_renew():
            holder = self._seen[0] if self._seen else None
            if holder != announced:
                log.info("standing by: lease %s/%s is held by %s", self.namespace, self.name, holder)
                announced = holder
            await asyncio.sleep(self.timing.retry)
        self.leading, self._renewed_at = True, time.monotonic()
        log.info("became the leader (lease %s/%s)", self.namespace, self.name)

    async def keep(self) -> None:
        """Renew the Lease until it is released or cancelled; if it could not be renewed in time,
        set `lost` and return (the caller must stop reconciling)."""
        while True:
            await asyncio.sleep(self.timing.retry)
            if self._released:
                return
            try:
                renewed = await self._try_acquire_or_renew()
            except Exception as exc:  # the API server is unreachable: keep trying until the deadline
                log.warning("renewing the lease failed: %s", describe_failure(exc))
                renewed = False
            if renewed:
                self._renewed_at = time.monotonic()
            elif not self.may_write() or self._held_by_another():
                self.leading, self.lost = False, True
                log.error("lost the leadership (lease %s/%s)", self.namespace, self.name)
                return

    def may_write(self) -> bool:
        """Whether this replica can still prove it leads: it renewed the Lease less than
        `renew_deadline` ago (fencing.py makes every write ask this)."""
        return self.leading and time.monotonic() - self._renewed_at < self.timing.renew_deadline

    async def release(self) -> None:
        """Hand the Lease back (a clean stop), so a standby takes over without waiting it out."""
        if not self.leading:
            return
        self.leading, self._released = False, True
        try:
            lease = await self.api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            await self.api.replace_namespaced_lease(self.name, self.namespace, lease)
            log.info("released the lease %s/%s", self.namespace, self.name)
        except ApiException as exc:
            log.warning("could not release the lease: %s", exc.status)

    def _held_by_another(self) -> bool:
        return bool(self._seen and self._seen[0] and self._seen[0] != self.identity)

    async def _try_acquire_or_renew(self) -> bool:
        now = now_micro_time()
        try:
            lease = await self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = {"metadata": {"name": self.name, "namespace": self.namespace}, "spec": {
                "holderIdentity": self.identity, "leaseDurationSeconds": int(self.timing.lease_duration),
                "acquireTime": now, "renewTime": now, "leaseTransitions": 0}}
            try:
                await self.api.create_namespaced_lease(self.namespace, body)
            except ApiException as exc2:
                if exc2.status == 409:
                    return False
                raise
            self._observe(self.identity, now)
            return True
        spec = lease.spec
        holder = spec.holder_identity or ""
        self._observe(holder, str(spec.renew_time))
        duration = spec.lease_duration_seconds or self.timing.lease_duration
        if holder and holder != self.identity and time.monotonic() - self._seen_at < duration:
            return False  # held, and renewed within its duration as far as we have seen
        if self._released:
            return False
        if holder != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity, spec.renew_time = self.identity, now
        spec.lease_duration_seconds = int(self.timing.lease_duration)
        try:
            await self.api.replace_namespaced_lease(self.name, self.namespace, lease)  # at its resourceVersion
        except ApiException as exc:
            if exc.status == 409:  # another replica wrote it first
                return False
            raise
        self._observe(self.identity, now)
        return True

    def _observe(self, holder: str, renew_time: str) -> None:
        if (holder, renew_time) != self._seen:
            self._seen, self._seen_at = (holder, renew_time), time.monotonic()
