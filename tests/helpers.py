"""Small helpers the tests share: polling, session CRUD, Secret decoding, kubectl."""

from __future__ import annotations

import asyncio
import base64
import secrets
import subprocess
import time
from typing import Awaitable, Callable, TypeVar

import aiohttp
from kubernetes_asyncio.client import ApiException, CoreV1Api, CustomObjectsApi

from lingo_api import resources as r
from lingo_loopback.binaries import kubernetes_binaries
from lingo_webhook.clients import api_client_manifest, hash_secret

T = TypeVar("T")

# Two registered facade clients with random secrets.
ACME = ("acme", secrets.token_urlsafe(24))
OTHER = ("other", secrets.token_urlsafe(24))


async def register_client(kube, namespace: str, client: tuple[str, str], max_sessions: int) -> None:
    manifest = api_client_manifest(client[0], hash_secret(client[1]), max_sessions, namespace)
    await CustomObjectsApi(kube).create_namespaced_custom_object(
        r.GROUP, r.VERSION, namespace, r.API_CLIENT_PLURAL, manifest
    )


def auth(client: tuple[str, str]) -> dict[str, str]:
    return {"ClientID": client[0], "ClientSecret": client[1]}


async def eventually(probe: Callable[[], Awaitable[T]], timeout: float = 30, interval: float = 0.2, what: str = ""):
    """Poll until `probe()` returns something truthy; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = await probe()
        except ApiException as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}; last: {last!r}"[:2000])


async def facade_knows(facade_url: str, client: tuple[str, str]) -> None:
    """Wait until the facade has read a newly registered client (it re-reads its clients every
    few seconds)."""
    async with aiohttp.ClientSession(base_url=facade_url) as http:
        async def known() -> bool:
            async with http.get("/session-storage/sessions", headers=auth(client)) as response:
                return response.status == 200

        await eventually(known, timeout=20, what=f"the facade to know client {client[0]}")


def session_body(name: str, **spec) -> dict:
    return {
        "apiVersion": r.API_VERSION,
        "kind": r.SESSION_KIND,
        "metadata": {"name": name},
        "spec": {"publisherCount": 1, "subscriberCount": 2, **spec},
    }


async def create_session(kube, namespace: str, name: str, **spec) -> dict:
    return await CustomObjectsApi(kube).create_namespaced_custom_object(
        r.GROUP, r.VERSION, namespace, r.SESSION_PLURAL, session_body(name, **spec)
    )


async def get_session(kube, namespace: str, name: str) -> dict:
    return await CustomObjectsApi(kube).get_namespaced_custom_object(r.GROUP, r.VERSION, namespace, r.SESSION_PLURAL, name)


async def wait_for_phase(kube, namespace: str, name: str, phase: str, timeout: float = 30) -> dict:
    async def probe():
        session = await get_session(kube, namespace, name)
        return session if (session.get("status") or {}).get("phase") == phase else None

    return await eventually(probe, timeout, what=f"{namespace}/{name} to be {phase}")


async def worker_ready(kube, namespace: str, name: str) -> dict | None:
    """The session if its WorkerReady condition is True, else None (for `eventually`)."""
    session = await get_session(kube, namespace, name)
    conditions = {c["type"]: c for c in (session.get("status") or {}).get("conditions") or []}
    return session if conditions.get(r.Condition.WORKER_READY, {}).get("status") == "True" else None


def condition(session: dict, ctype: str) -> dict:
    return next(c for c in session["status"]["conditions"] if c["type"] == ctype)


async def read_tokens(kube, namespace: str, session: str) -> dict[str, object]:
    secret = await CoreV1Api(kube).read_namespaced_secret(r.tokens_secret_name(session), namespace)
    return {
        **r.client_tokens_from_secret(secret.data),
        "worker": base64.b64decode(secret.data[r.SECRET_WORKER_TOKEN]).decode(),
        "secret": secret,
    }


async def gone(read: Callable[[], Awaitable[object]]) -> bool:
    try:
        await read()
    except ApiException as exc:
        return exc.status == 404
    return False


async def delete_and_wait(kube, namespace: str, name: str) -> None:
    """Delete a session while its operator still runs, so the finalizer is released."""
    try:
        await CustomObjectsApi(kube).delete_namespaced_custom_object(r.GROUP, r.VERSION, namespace, r.SESSION_PLURAL, name)
    except ApiException as exc:
        if exc.status != 404:
            raise
    await eventually(lambda: gone(lambda: get_session(kube, namespace, name)), what=f"{name} deleted")


def kubectl(cluster, *args: str) -> subprocess.CompletedProcess:
    """kubectl against the loopback cluster; HOME points into its workdir so no cache lands in the repo."""
    env = {"KUBECONFIG": str(cluster.kubeconfig), "PATH": "/usr/bin:/bin", "HOME": str(cluster.workdir)}
    return subprocess.run([str(kubernetes_binaries()["kubectl"]), *args], env=env, capture_output=True, text=True)


# -- worker pools ----------------------------------------------------------------------------

async def create_pool(kube, namespace: str, name: str = "warm", **spec) -> dict:
    body = {"apiVersion": r.API_VERSION, "kind": r.POOL_KIND, "metadata": {"name": name},
            "spec": {"minReady": 2, **spec}}
    return await CustomObjectsApi(kube).create_namespaced_custom_object(r.GROUP, r.VERSION, namespace,
                                                                        r.POOL_PLURAL, body)


async def pool_status(kube, namespace: str, name: str = "warm") -> dict:
    pool = await CustomObjectsApi(kube).get_namespaced_custom_object(r.GROUP, r.VERSION, namespace,
                                                                     r.POOL_PLURAL, name)
    return pool.get("status") or {}


async def wait_for_ready_workers(kube, namespace: str, count: int, name: str = "warm", timeout: float = 120):
    async def probe():
        status = await pool_status(kube, namespace, name)
        return status if status.get("ready", 0) >= count else None

    return await eventually(probe, timeout=timeout, interval=0.5, what=f"{count} ready workers in pool {name}")


async def assert_rooms_stay_gone(livekit, rooms: set[str], seconds: float = 12) -> None:
    """For `seconds` from now, none of `rooms` exists in LiveKit (a fenced leader that resumed
    must not create them again)."""
    from livekit import api as livekit_api

    since = time.monotonic()
    async with livekit_api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as lkapi:
        while time.monotonic() - since < seconds:
            existing = {room.name for room in (await lkapi.room.list_rooms(livekit_api.ListRoomsRequest())).rooms}
            back = sorted(rooms & existing)
            assert not back, f"{time.monotonic() - since:.1f} s after the leader resumed, rooms of deleted sessions: {back}"
            await asyncio.sleep(0.2)
