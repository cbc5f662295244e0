"""An informer for the facade: one list+watch of the namespace's StreamingSessions shared by
every request, instead of a list (quota) and a watch (readiness) per POST."""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

import aiohttp
from kubernetes_asyncio import watch
from kubernetes_asyncio.client import ApiException, CustomObjectsApi

from lingo_api import resources as r
from lingo_api.failure_text import describe_failure

log = logging.getLogger("lingo.webhook")

Predicate = Callable[[dict], bool]


class SessionDeleted(Exception):
    pass


class SessionCache:
    def __init__(self, custom: CustomObjectsApi, namespace: str):
        self.custom, self.namespace = custom, namespace
        self._sessions: dict[str, dict] = {}
        self._waiters: dict[str, list[tuple[Predicate, asyncio.Future]]] = {}
        self._synced = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="session-informer")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def wait_synced(self, timeout: float) -> None:
        await asyncio.wait_for(self._synced.wait(), timeout)

    def get(self, name: str) -> dict | None:
        return self._sessions.get(name)

    def sessions_of(self, client_id: str) -> list[dict]:
        return [s for s in self._sessions.values() if (s["metadata"].get("labels") or {}).get(r.LABEL_CLIENT) == client_id]

    async def wait_for(self, name: str, predicate: Predicate) -> dict:
        """The session as soon as `predicate` holds for it; raises SessionDeleted if it goes away."""
        current = self._sessions.get(name)
        if current is not None and predicate(current):
            return current
        future = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(name, []).append((predicate, future))
        try:
            return await future
        finally:
            waiters = self._waiters.get(name, [])
            if (predicate, future) in waiters:
                waiters.remove((predicate, future))
            if not waiters:
                self._waiters.pop(name, None)

    def _apply(self, kind: str, session: dict) -> None:
        name = session["metadata"]["name"]
        if kind == "DELETED":
            self._sessions.pop(name, None)
        else:
            self._sessions[name] = session
        for predicate, future in list(self._waiters.get(name, [])):
            if future.done():
                continue
            if kind == "DELETED":
                future.set_exception(SessionDeleted(name))
            else:
                try:
                    if predicate(session):
                        future.set_result(session)
                except Exception as exc:  # a predicate that raises fails its waiter, not the informer
                    future.set_exception(exc)

    async def _run(self) -> None:
        while True:
            try:
                listing = await self.custom.list_namespaced_custom_object(
                    r.GROUP, r.VERSION, self.namespace, r.SESSION_PLURAL)
                fresh = {s["metadata"]["name"]: s for s in listing.get("items", [])}
                for name in set(self._sessions) - set(fresh):
                    self._apply("DELETED", self._sessions[name])
                for session in fresh.values():
                    self._apply("MODIFIED", session)
                self._synced.set()
                await self._watch(listing["metadata"]["resourceVersion"])
            except asyncio.CancelledError:
                raise
            except (ApiException, aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                log.warning("session informer restarting after %s", describe_failure(exc))
                await asyncio.sleep(1)

    async def _watch(self, resource_version: str) -> None:
        """Follow changes until the watch expires (410 Gone means relist)."""
        while True:
            stream = watch.Watch()
            try:
                async with stream.stream(
                    self.custom.list_namespaced_custom_object, r.GROUP, r.VERSION, self.namespace, r.SESSION_PLURAL,
                    resource_version=resource_version, timeout_seconds=300, allow_watch_bookmarks=True,
                ) as events:
                    async for event in events:
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            if isinstance(obj, dict) and obj.get("code") == 410:
                                return
                            continue
                        resource_version = obj["metadata"]["resourceVersion"]
                        if event["type"] != "BOOKMARK":
                            self._apply(event["type"], obj)
            except ApiException as exc:
                if exc.status == 410:
                    return
                raise
            finally:
                stream.stop()
