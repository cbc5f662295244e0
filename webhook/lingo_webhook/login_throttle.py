"""Bounds on the work an unauthenticated request can cause: each secret check is one scrypt
(~40 ms of CPU and 16 MiB), so a flood of wrong secrets must not queue up without limit or
starve the first login of a real client.

- at most `max_concurrent` checks run at once, and at most `max_waiting` wait; beyond that a
  request is answered 503 at once (Retry-After: 1);
- one peer address may have at most `max_per_peer` checks waiting or running (429 beyond), so
  one flooding address cannot fill the queue;
- checks for one client ID run one at a time, so hammering one ID takes one slot, not all;
- an address that keeps failing for one client ID is refused for that client ID with 429 for a
  while, growing from 1 s to `max_block` seconds, before any scrypt runs; one success clears
  it. Keyed on the pair, so one attacker behind a shared address (an Ingress, a NAT) locks out
  only the client it guesses at from there, not every client (issue 24). Rotating client IDs
  buys no more guesses at any one client's secret, and the work it causes is bounded by the
  limits above. The address is the client's behind a trusted proxy
  (webhook/lingo_webhook/client_address.py).
Verified (client, secret) pairs never reach this: they are answered from the registry's cache.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

from .errors import ApiError


@dataclass
class _Failures:
    count: int = 0
    blocked_until: float = 0.0
    last: float = 0.0


class LoginThrottle:
    def __init__(self, max_concurrent: int | None = None, max_waiting: int = 32, max_per_peer: int = 4,
                 free_failures: int = 5, max_block_seconds: float = 60.0, forget_after_seconds: float = 600.0):
        self.max_waiting = max_waiting
        self.max_per_peer = max_per_peer
        self._per_peer: dict[str, int] = {}
        self.free_failures = free_failures
        self.max_block_seconds = max_block_seconds
        self.forget_after_seconds = forget_after_seconds
        self._slots = asyncio.Semaphore(max_concurrent or os.cpu_count() or 2)
        self._waiting = 0
        self._per_client: dict[str, tuple[asyncio.Lock, int]] = {}
        self._failures: dict[str, _Failures] = {}

    def check_peer(self, peer: str, client_id: str) -> None:
        record = self._failures.get(_pair(peer, client_id))
        now = time.monotonic()
        if record and record.blocked_until > now:
            wait = math.ceil(record.blocked_until - now)
            raise ApiError(429, "too_many_failed_logins",
                           f"too many failed logins for this client from this address; retry in {wait} s",
                           headers={"Retry-After": str(wait)})

    @asynccontextmanager
    async def slot(self, client_id: str, peer: str):
        """Hold one verification slot (and this client ID's turn) for the duration."""
        if self._per_peer.get(peer, 0) >= self.max_per_peer:
            raise ApiError(429, "too_many_logins", "too many logins in progress from this address; retry in a second",
                           headers={"Retry-After": "1"})
        if self._waiting >= self.max_waiting:
            raise ApiError(503, "busy", "too many logins are being checked; retry in a second",
                           headers={"Retry-After": "1"})
        self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
        self._waiting += 1
        lock, users = self._per_client.get(client_id) or (asyncio.Lock(), 0)
        self._per_client[client_id] = (lock, users + 1)
        waiting = True
        try:
            async with lock, self._slots:
                self._waiting -= 1
                waiting = False
                yield
        finally:
            if waiting:
                self._waiting -= 1
            if self._per_peer[peer] <= 1:
                del self._per_peer[peer]
            else:
                self._per_peer[peer] -= 1
            lock, users = self._per_client[client_id]
            if users <= 1:
                del self._per_client[client_id]
            else:
                self._per_client[client_id] = (lock, users - 1)

    def failed(self, peer: str, client_id: str) -> None:
        now = time.monotonic()
        if len(self._failures) > 10_000:
            self._failures = {p: f for p, f in self._failures.items() if now - f.last < self.forget_after_seconds}
        record = self._failures.setdefault(_pair(peer, client_id), _Failures())
        if now - record.last > self.forget_after_seconds:
            record.count = 0
        record.count += 1
        record.last = now
        if record.count > self.free_failures:
            record.blocked_until = now + min(2.0 ** (record.count - self.free_failures - 1), self.max_block_seconds)

    def succeeded(self, peer: str, client_id: str) -> None:
        self._failures.pop(_pair(peer, client_id), None)


def _pair(peer: str, client_id: str) -> str:
    return f"{peer}\0{client_id}"
