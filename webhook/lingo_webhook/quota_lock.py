"""A per-client lock held across facade replicas: a coordination.k8s.io Lease per client.

A client's quota is checked by counting its live sessions in the API server and creating the new
one while holding this lock, so two replicas cannot both see "19 of 20" and both create. The
Lease is taken and given back with resourceVersion preconditions (a 409 means another replica
got there first: try again shortly). A replica that dies holding it blocks that client for at
most HOLD_SECONDS; holders keep it for the few milliseconds of a count and a create.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import random
import time
from contextlib import asynccontextmanager

from kubernetes_asyncio.client import ApiException, CoordinationV1Api, V1Lease

from lingo_api.kube_time import now_micro_time, parse_time

from .errors import API_TIMEOUT_SECONDS, ApiError

HOLD_SECONDS = 5  # a holder that died is waited out this long
WAIT_SECONDS = 10  # a create that cannot get the lock in this time is answered 503


def lease_name(client_id: str) -> str:
    # Client IDs are not all valid object names; a digest is, and keeps one Lease per client.
    return "lingo-quota-" + hashlib.sha256(client_id.encode()).hexdigest()[:20]


class ClientQuotaLock:
    def __init__(self, api: CoordinationV1Api, namespace: str, holder: str):
        self.api, self.namespace, self.holder = api, namespace, holder
        self._known: dict[str, V1Lease] = {}  # the last version of each Lease seen: a write needs no read first

    @asynccontextmanager
    async def held(self, client_id: str):
        name = lease_name(client_id)
        deadline = time.monotonic() + WAIT_SECONDS
        while not await self._take(name):
            if time.monotonic() > deadline:
                raise ApiError(503, "quota_busy", "another create for this client is in progress; retry")
            await asyncio.sleep(0.01 + random.random() * 0.02)
        try:
            yield
        finally:
            await self._give_back(name)

    async def _take(self, name: str) -> bool:
        lease = self._known.get(name)
        if lease is None or self._held_by_another(lease):
            try:
                lease = await self.api.read_namespaced_lease(name, self.namespace, _request_timeout=API_TIMEOUT_SECONDS)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                return await self._create(name)
            self._known[name] = lease
            if self._held_by_another(lease):
                return False
        lease.spec.holder_identity, lease.spec.lease_duration_seconds = self.holder, HOLD_SECONDS
        lease.spec.acquire_time = lease.spec.renew_time = now_micro_time()
        try:
            self._known[name] = await self.api.replace_namespaced_lease(name, self.namespace, lease,
                                                                         _request_timeout=API_TIMEOUT_SECONDS)
        except ApiException as exc:
            self._known.pop(name, None)
            if exc.status in (404, 409):  # deleted, or another replica wrote it first
                return False
            raise
        return True

    async def _create(self, name: str) -> bool:
        now = now_micro_time()
        body = {"metadata": {"name": name, "namespace": self.namespace,
                             "labels": {"app.kubernetes.io/managed-by": "lingo-operator"}},
                "spec": {"holderIdentity": self.holder, "leaseDurationSeconds": HOLD_SECONDS,
                         "acquireTime": now, "renewTime": now}}
        try:
            self._known[name] = await self.api.create_namespaced_lease(self.namespace, body, _request_timeout=API_TIMEOUT_SECONDS)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def _give_back(self, name: str) -> None:
        lease = self._known.get(name)
        if lease is None:
            return
        lease.spec.holder_identity = None
        try:
            self._known[name] = await self.api.replace_namespaced_lease(name, self.namespace, lease,
                                                                         _request_timeout=API_TIMEOUT_SECONDS)
        except ApiException:  # taken over after HOLD_SECONDS, or the API server is away: it expires
            self._known.pop(name, None)

    def _held_by_another(self, lease: V1Lease) -> bool:
        spec = lease.spec
        if not spec.holder_identity or spec.holder_identity == self.holder:
            return False
        renewed = spec.renew_time or spec.acquire_time
        if renewed is None:
            return False
        if isinstance(renewed, str):
            renewed = parse_time(renewed)
        expires = renewed + dt.timedelta(seconds=spec.lease_duration_seconds or HOLD_SECONDS)
        return dt.datetime.now(dt.timezone.utc) < expires
