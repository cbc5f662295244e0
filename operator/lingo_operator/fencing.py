"""Fencing: an operator replica that cannot prove it still leads writes nothing.

Leader election alone does not stop a leader that was paused (a stopped VM, SIGSTOP, a long
pause of its node, a partition) from acting on what it knew before: when it resumes, its
handlers and background tasks run on for a moment before its next Lease check finds that a
standby took over, and in that moment they write. A probe re-created the LiveKit rooms of three
deleted sessions that way (issue 25). As in client-go, the leader counts itself the leader only
until `renew_deadline` after its last successful renewal (leadership.LeaderElection.may_write),
timed on its own monotonic clock, which runs on while the process is stopped; and every write to
Kubernetes or LiveKit, and every claim handed to a pooled worker (session_handlers.ensure_worker),
asks that first. The deadline is shorter than the lease a standby waits
out, so by the time a standby may take over, the old leader has stopped writing.

Reads are not fenced (they change nothing), nor are the Lease's own requests (they go through
another client) or kopf's bookkeeping on the objects it handles (finalizers, handler progress).
"""

from __future__ import annotations

from collections.abc import Callable

import kopf
from kubernetes_asyncio.client import ApiClient

READS = ("GET", "HEAD", "OPTIONS")


class FencedOut(kopf.TemporaryError):
    """Not sure of being the leader any more; kopf retries later (or, more likely, stops first)."""

    def __init__(self, what: str):
        super().__init__(f"not written ({what}): this replica cannot prove it still holds the leader Lease",
                         delay=1)


class Fence:
    """The one question every write asks (`check`); `may_write` is the leader election's, or
    `always` for a replica that runs without one."""

    def __init__(self, may_write: Callable[[], bool]):
        self.may_write = may_write

    def check(self, what: str) -> None:
        if not self.may_write():
            raise FencedOut(what)


def fence_kubernetes(api: ApiClient, fence: Fence) -> None:
    """Make `api` refuse every write the fence refuses."""
    request = api.request

    def fenced(method, url, *args, **kwargs):
        if method.upper() not in READS:
            fence.check(f"{method} {url.split('?', 1)[0]}")
        return request(method, url, *args, **kwargs)

    api.request = fenced


def always() -> bool:
    """A replica that runs without leader election writes whenever it must."""
    return True
