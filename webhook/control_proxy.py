"""WebSocket relay from a session's public control_url to its worker pod.

Clients reach one public endpoint; the facade forwards the connection (query string and all
frames) to the worker that serves the session. The worker authenticates the session token
and enforces its permissions; the facade only routes.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging

import aiohttp
from aiohttp import WSMsgType, web
from kubernetes_asyncio.client import ApiException

from lingo_api import resources as r

from .errors import ApiError

log = logging.getLogger("lingo.webhook")


async def _worker_endpoint(request: web.Request) -> str:
    store = request.app["store"]
    namespace = request.query.get("namespace") or store.namespace
    allowed = request.app["config"].control_namespaces or (store.namespace,)
    if not any(fnmatch.fnmatchcase(namespace, pattern) for pattern in allowed):
        raise ApiError(404, "session_not_found", "no such session")  # same answer as a missing one
    try:
        session = await store.custom.get_namespaced_custom_object(
            r.GROUP, r.VERSION, namespace, r.SESSION_PLURAL, request.match_info["id"]
        )
    except ApiException as exc:
        if exc.status == 404:
            raise ApiError(404, "session_not_found", "no such session") from exc
        raise
    status = session.get("status") or {}
    if status.get("phase") != r.Phase.READY or not status.get("workerEndpoint"):
        raise ApiError(503, "worker_not_ready", "the session's translation worker is not ready yet; retry shortly")
    return status["workerEndpoint"]


async def _pump(source, sink) -> None:
    async for message in source:
        if message.type == WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        else:
            break


async def proxy_control(request: web.Request) -> web.StreamResponse:
    endpoint = await _worker_endpoint(request)
    query = {k: v for k, v in request.query.items() if k != "namespace"}
    session: aiohttp.ClientSession = request.app["http"]
    try:
        upstream = await session.ws_connect(f"ws://{endpoint}{r.WORKER_CONTROL_PATH}", params=query, heartbeat=30)
    except (aiohttp.ClientError, OSError) as exc:
        raise ApiError(502, "worker_unreachable", "could not reach the session's translation worker") from exc
    client = web.WebSocketResponse(heartbeat=30)
    await client.prepare(request)
    try:
        tasks = [asyncio.ensure_future(_pump(client, upstream)), asyncio.ensure_future(_pump(upstream, client))]
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
    finally:
        await upstream.close()
        await client.close()
    return client
