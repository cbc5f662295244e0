"""Sessions as the facade sees them: StreamingSession resources labelled with their client."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from kubernetes_asyncio.client import ApiException, CoreV1Api, CustomObjectsApi

from lingo_api import resources as r
from lingo_api.session_spec import SessionSpec

from . import metrics
from .errors import API_TIMEOUT_SECONDS, STORAGE_UNAVAILABLE, ApiError
from .quota_lock import ClientQuotaLock
from .session_cache import SessionCache, SessionDeleted

log = logging.getLogger("lingo.webhook")

STORAGE_CHECK_SECONDS = 1.0
STORAGE_CHECK_TIMEOUT = 3  # the API server's own etcd check gives up after 2 s
ACTIVE_PHASES = (None, r.Phase.PENDING, r.Phase.PROVISIONING, r.Phase.READY)


def _condition(session: dict, ctype: str) -> dict:
    for c in (session.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return {}


def is_usable(session: dict) -> bool:
    """Room and tokens exist: the client can join. The worker may still be starting."""
    return all(_condition(session, c).get("status") == "True" for c in (r.Condition.ROOM_READY, r.Condition.TOKENS_READY))


def describe(session: dict) -> dict:
    meta, spec, status = session["metadata"], session.get("spec") or {}, session.get("status") or {}
    return {
        "session_id": meta["name"],
        "phase": status.get("phase", r.Phase.PENDING),
        "room_name": status.get("roomName"),
        "stream_url": status.get("streamUrl"),
        "control_url": status.get("controlUrl"),
        "publisher_count": spec.get("publisherCount"),
        "subscriber_count": spec.get("subscriberCount"),
        "source_language": spec.get("sourceLanguage"),
        "target_languages": spec.get("targetLanguages"),
        "worker_profile": spec.get("workerProfile"),
        "worker_ready": _condition(session, r.Condition.WORKER_READY).get("status") == "True",
        "created_at": meta.get("creationTimestamp"),
        "expires_at": status.get("expiresAt"),
        "conditions": [
            {k: c.get(k) for k in ("type", "status", "reason", "message")} for c in status.get("conditions") or []
        ],
    }


class SessionStore:
    def __init__(self, custom: CustomObjectsApi, core: CoreV1Api, cache: SessionCache, ready_timeout: float,
                 quota_lock: ClientQuotaLock):
        self.custom, self.core, self.cache, self.ready_timeout = custom, core, cache, ready_timeout
        self.namespace = cache.namespace
        self.quota_lock = quota_lock
        # Serialises a client's creates within this replica (the Lease does it across replicas;
        # this keeps one replica's own creates from polling it against each other).
        self._client_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._storage_checked_at, self._storage_down = -STORAGE_CHECK_SECONDS, False
        self._storage_check: asyncio.Task | None = None

    async def _storage_ready(self) -> None:
        """503 at once while the API server cannot reach etcd (its /readyz says "[-]etcd", or does
        not answer in time): it would take a create and hang, and the create could land later.
        Asked at most once a STORAGE_CHECK_SECONDS; once it said no, the next asks run beside
        the requests, which are refused until one says yes."""
        if time.monotonic() - self._storage_checked_at >= STORAGE_CHECK_SECONDS:
            if not self._storage_down:
                await self._check_storage()
            elif self._storage_check is None or self._storage_check.done():
                self._storage_check = asyncio.create_task(self._check_storage(), name="storage-check")
        if self._storage_down:
            raise STORAGE_UNAVAILABLE

    async def _check_storage(self) -> None:
        self._storage_checked_at = time.monotonic()
        try:
            await self.custom.api_client.call_api("/readyz", "GET", auth_settings=["BearerToken"],
                                                  _request_timeout=STORAGE_CHECK_TIMEOUT)
            self._storage_down = False
        except ApiException as exc:
            if exc.status in (401, 403, 404):  # a cluster that does not let us ask: not asked again
                self._storage_checked_at = float("inf")
            body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(exc.body or "")
            self._storage_down = "[-]etcd" in body
        except asyncio.TimeoutError:
            self._storage_down = True
        except Exception:  # the API server itself unreachable: the create's own calls will say so
            self._storage_down = False

    async def _synced(self) -> None:
        if not self.cache.synced:
            try:
                await self.cache.wait_synced(timeout=10)
            except asyncio.TimeoutError:
                raise ApiError(503, "not_ready", "the facade has not loaded the sessions yet; retry") from None

    async def list_for(self, client_id: str) -> list[dict]:
        await self._synced()
        return sorted(self.cache.sessions_of(client_id), key=lambda s: s["metadata"].get("creationTimestamp", ""))

    async def _active_count(self, client_id: str) -> int:
        """The client's live sessions as the API server has them now (not this replica's cache:
        another replica may have created or deleted one a moment ago)."""
        listed = await self.custom.list_namespaced_custom_object(
            r.GROUP, r.VERSION, self.namespace, r.SESSION_PLURAL, label_selector=f"{r.LABEL_CLIENT}={client_id}",
            _request_timeout=API_TIMEOUT_SECONDS)
        return sum(1 for s in listed.get("items", []) if (s.get("status") or {}).get("phase") in ACTIVE_PHASES
                   and not s["metadata"].get("deletionTimestamp"))

    async def get_owned(self, client_id: str, session_id: str) -> dict:
        """From the informer's cache (so reads work while the API server is down); a session
        the cache has not seen yet is read from the API server."""
        session = self.cache.get(session_id) if self.cache.synced else None
        if session is None:
            try:
                session = await self.custom.get_namespaced_custom_object(
                    r.GROUP, r.VERSION, self.namespace, r.SESSION_PLURAL, session_id
                )
            except ApiException as exc:
                if exc.status == 404:
                    raise ApiError(404, "session_not_found", f"no session '{session_id}'") from exc
                raise
        if (session["metadata"].get("labels") or {}).get(r.LABEL_CLIENT) != client_id:
            raise ApiError(403, "forbidden", "this session belongs to another client")
        return session

    async def delete(self, session_id: str) -> None:
        try:
            await self.custom.delete_namespaced_custom_object(
                r.GROUP, r.VERSION, self.namespace, r.SESSION_PLURAL, session_id
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def create_for(self, client, spec: SessionSpec) -> tuple[dict, dict]:
        """The one path every create takes (both REST routes, the 2.x stream): quota,
        StreamingSession, wait until joinable; returns (describe(session), tokens)."""
        started = time.perf_counter()
        session, tokens = await self.create(client.client_id, client.max_sessions, spec)
        metrics.SESSIONS_CREATED.labels(client.client_id).inc()
        summary = describe(session)
        log.info("client %s created session %s in %.0f ms", client.client_id, summary["session_id"],
                 (time.perf_counter() - started) * 1000)
        return summary, tokens

    async def create(self, client_id: str, max_sessions: int, spec: SessionSpec) -> tuple[dict, dict]:
        """Create a session and wait until it can be joined; returns (session, tokens)."""
        await self._synced()
        await self._storage_ready()
        async with self._client_locks[client_id], self.quota_lock.held(client_id):
            active = await self._active_count(client_id)
            if active >= max_sessions:
                raise ApiError(429, "quota_exceeded", f"client has {active} active sessions (limit {max_sessions})")
            body = {
                "apiVersion": r.API_VERSION,
                "kind": r.SESSION_KIND,
                "metadata": {"generateName": "ss-", "labels": {r.LABEL_CLIENT: client_id},
                             "annotations": {r.ANNOTATION_DELIVERY: r.DELIVERY_PENDING}},
                "spec": spec.to_crd(),
            }
            created = await self.custom.create_namespaced_custom_object(
                r.GROUP, r.VERSION, self.namespace, r.SESSION_PLURAL, body, _request_timeout=API_TIMEOUT_SECONDS
            )
        name = created["metadata"]["name"]
        try:
            session = await asyncio.wait_for(self._wait_usable(name), self.ready_timeout)
            tokens = await self.read_tokens(name)
            await self.custom.patch_namespaced_custom_object(
                r.GROUP, r.VERSION, self.namespace, r.SESSION_PLURAL, name,
                {"metadata": {"annotations": {r.ANNOTATION_DELIVERY: r.DELIVERY_DELIVERED}}},
                _content_type=r.MERGE_PATCH, _request_timeout=API_TIMEOUT_SECONDS)
        except (asyncio.TimeoutError, ApiError) as exc:
            # Never leave a half-made session behind: the finalizer also removes its room.
            await self.delete(name)
            if isinstance(exc, ApiError):
                raise
            raise ApiError(503, "session_not_ready", f"session was not ready within {self.ready_timeout:.0f}s; "
                           "it has been deleted, please retry") from None
        except BaseException:
            await self.delete(name)
            raise
        return session, tokens

    async def _wait_usable(self, name: str) -> dict:
        def settled(session: dict) -> bool:
            return is_usable(session) or (session.get("status") or {}).get("phase") == r.Phase.FAILED

        try:
            session = await self.cache.wait_for(name, settled)
        except SessionDeleted:
            raise ApiError(503, "session_deleted", "the session was deleted while being created") from None
        if not is_usable(session):
            raise ApiError(503, "session_failed", (session.get("status") or {}).get("message", "session failed"))
        return session

    async def read_tokens(self, name: str) -> dict:
        secret = await self.core.read_namespaced_secret(r.tokens_secret_name(name), self.namespace)
        return r.client_tokens_from_secret(secret.data or {})
