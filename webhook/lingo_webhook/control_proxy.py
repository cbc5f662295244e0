"""WebSocket relay from a session's public control_url to its worker pod.

Clients reach one public endpoint; the facade forwards the connection (query string and all
frames) to the worker that serves the session. Before anything is looked up or opened
upstream, the request must be a WebSocket upgrade and must present a session token (`?token=`
or a first `authenticate` message); the token's claim names the session's namespace, so the
URL needs no query string and clients can append `?token=`. A missing session, a session
outside the relay's namespaces and a wrong token all get the same `UNAUTHORIZED` answer, so
the path reveals
nothing to someone without a token; a missing session costs no API request (the informer's
cache answers). A client that connects before the worker is ready is held until it is.
The worker still authenticates the token itself and enforces its permissions.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hmac
import json
import logging
import time
from collections import OrderedDict

import aiohttp
from aiohttp import WSMsgType, web
from kubernetes_asyncio.client import ApiException

from lingo_api import resources as r
from lingo_api.session_tokens import InvalidToken, read_control_grant
from lingo_api.untrusted import MAX_TOKEN_CHARS, parse_control_message

from .errors import ApiError, kubernetes_unavailable

log = logging.getLogger("lingo.webhook")

AUTH_TIMEOUT_SECONDS = 10
WORKER_WAIT_SECONDS = 30
# A session whose worker went away (worker_liveness.py replaces it) is followed to the next one:
# the session is looked at this often, and its next worker waited for this long (a cold start).
FOLLOW_POLL_SECONDS = 1.0
REPLACEMENT_WAIT_SECONDS = 120
# Close codes a worker uses on purpose (its task ended, the client was refused): the relay ends too.
DELIBERATE_CLOSE_CODES = frozenset({1000, 1001, 1008}) | frozenset(range(4000, 5000))
# What the worker says for a token it did not issue; the relay says the same for every refusal.
UNAUTHORIZED = "token was not issued for this session"


class IssuedTokens:
    """The client tokens of recently seen sessions (read once per session: they never change)."""

    def __init__(self, size: int = 1000):
        self._size = size
        self._tokens: OrderedDict[str, list[bytes]] = OrderedDict()

    async def matches(self, core, session: dict, token: str) -> bool:
        meta = session["metadata"]
        tokens = self._tokens.get(meta["uid"])
        if tokens is None:
            try:
                secret = await core.read_namespaced_secret(r.tokens_secret_name(meta["name"]), meta["namespace"])
            except ApiException as exc:
                if exc.status == 404:  # not issued yet: nobody can hold one
                    return False
                raise
            issued = r.client_tokens_from_secret(secret.data or {})
            tokens = [t.encode() for t in issued["publisher"] + issued["subscriber"]]
            self._tokens[meta["uid"]] = tokens
            while len(self._tokens) > self._size:
                self._tokens.popitem(last=False)
        presented, matched = token.encode(), False
        for issued_token in tokens:
            matched |= hmac.compare_digest(presented, issued_token)
        return matched


async def _send_error(ws: web.WebSocketResponse, code: str, desc: str, close_code: int) -> None:
    """An error in the control protocol's shape (Palabra's `{"code", "desc"}`), then close."""
    await ws.send_str(json.dumps({"message_type": "error", "data": {"code": code, "desc": desc}}))
    await ws.close(code=close_code, message=code.encode())


async def _token_from_client(ws: web.WebSocketResponse, query_token: str | None) -> str | None:
    if query_token:
        return query_token
    try:
        message = await ws.receive(timeout=AUTH_TIMEOUT_SECONDS)
    except asyncio.TimeoutError:
        return None
    parsed = parse_control_message(message.data) if message.type == WSMsgType.TEXT else None
    if parsed is None or parsed[0] != "authenticate":
        return None
    token = parsed[1].get("token")
    return token if isinstance(token, str) else None


def _namespace_of(token: str, default: str) -> str:
    """The namespace a token says its session lives in (routing only: the token itself is then
    compared with the ones issued for that session)."""
    try:
        return read_control_grant(token).namespace or default
    except InvalidToken:
        return default


async def _find_session(request: web.Request, session_id: str, token: str) -> dict | None:
    """The session from the informer's cache (own namespace) or the API server (other allowed ones)."""
    store = request.app["store"]
    namespace = _namespace_of(token, store.namespace)
    allowed = request.app["config"].control_namespaces or (store.namespace,)
    if not any(fnmatch.fnmatchcase(namespace, pattern) for pattern in allowed):
        return None
    if namespace == store.namespace:
        return store.cache.get(session_id)
    try:
        return await store.custom.get_namespaced_custom_object(
            r.GROUP, r.VERSION, namespace, r.SESSION_PLURAL, session_id)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def worker_endpoint(session: dict) -> str | None:
    status = session.get("status") or {}
    ready = status.get("phase") == r.Phase.READY and status.get("workerEndpoint")
    return status["workerEndpoint"] if ready else None


async def pump(source, sink) -> None:
    async for message in source:
        if message.type == WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        else:
            break


async def relay(client, upstream, moved=None) -> str:
    """Frames both ways until either side ends, or until the awaitable `moved` finishes (the
    session's worker is now another); the rest is then stopped, and a write to a socket that
    closed meanwhile is the end of the relay, not an error. Returns which ended it: "client",
    "upstream" or "moved"."""
    tasks = {asyncio.ensure_future(pump(client, upstream)): "client",
             asyncio.ensure_future(pump(upstream, client)): "upstream"}
    if moved is not None:
        tasks[asyncio.ensure_future(moved)] = "moved"
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return tasks[next(iter(done))]
    finally:
        for task in tasks:
            task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Exception) and not isinstance(outcome, (ConnectionError, aiohttp.ClientError)):
                log.warning("control relay ended by %s: %s", type(outcome).__name__, outcome)


async def _worker_moved(request: web.Request, session_id: str, token: str, endpoint: str) -> None:
    """Returns once the session names a worker other than `endpoint`: a worker on a lost node
    never closes its socket, so the relay cannot wait for that. A session that names no worker
    for a while is not a move: its worker may only have missed readiness probes on a busy node
    (the operator then clears the endpoint until it answers again); the relay stays with it."""
    while True:
        await asyncio.sleep(FOLLOW_POLL_SECONDS)
        session = await _find_session(request, session_id, token)
        named = worker_endpoint(session) if session is not None else None
        if named and named != endpoint:
            return


async def _next_worker(request: web.Request, session_id: str, token: str, previous: str) -> str | None:
    """The session's next worker after `previous` went away, waited for up to REPLACEMENT_WAIT_SECONDS;
    None when the session is gone or its task ended."""
    deadline = time.monotonic() + REPLACEMENT_WAIT_SECONDS
    while time.monotonic() < deadline:
        session = await _find_session(request, session_id, token)
        if session is None or r.task_ended(session.get("status") or {}):
            return None
        endpoint = worker_endpoint(session)
        if endpoint and endpoint != previous:
            return endpoint
        await asyncio.sleep(FOLLOW_POLL_SECONDS)
    return None


async def proxy_control(request: web.Request, session_id: str) -> web.StreamResponse:
    client = web.WebSocketResponse(heartbeat=30, max_msg_size=r.CONTROL_MESSAGE_MAX_BYTES)
    if not client.can_prepare(request).ok:
        raise ApiError(400, "websocket_required", "the control URL speaks WebSocket only")
    await client.prepare(request)
    token = await _token_from_client(client, request.query.get("token"))
    if not token or len(token) > MAX_TOKEN_CHARS:
        await _send_error(client, "UNAUTHORIZED", UNAUTHORIZED, 4401)
        return client
    try:
        session = await _find_session(request, session_id, token)
        if session is None or not await request.app["issued_tokens"].matches(
                request.app["store"].core, session, token):
            await _send_error(client, "UNAUTHORIZED", UNAUTHORIZED, 4401)
            return client
        # Held, not refused, while the worker starts.
        deadline = time.monotonic() + WORKER_WAIT_SECONDS
        while (endpoint := worker_endpoint(session)) is None:
            if time.monotonic() > deadline or client.closed:
                await _send_error(client, "WORKER_NOT_READY", "the session's translation worker is not ready; retry",
                                  1013)
                return client
            await asyncio.sleep(0.2)
            session = await _find_session(request, session_id, token) or session
    except Exception as exc:
        if not kubernetes_unavailable(exc):
            raise
        await _send_error(client, "KUBERNETES_UNAVAILABLE", "the Kubernetes API is unreachable; retry shortly", 1013)
        return client

    query = {k: v for k, v in request.query.items() if k != "token"}
    query["token"] = token
    http: aiohttp.ClientSession = request.app["http"]
    try:
        while True:
            try:
                upstream = await http.ws_connect(
                    f"ws://{endpoint}{r.WORKER_CONTROL_PATH}", params=query, heartbeat=30,
                    max_msg_size=r.CONTROL_MESSAGE_MAX_BYTES, timeout=aiohttp.ClientWSTimeout(ws_close=2))
            except (aiohttp.ClientError, OSError):
                await _send_error(client, "WORKER_UNREACHABLE", "could not reach the session's translation worker", 1011)
                return client
            try:
                ended_by = await relay(client, upstream, _worker_moved(request, session_id, token, endpoint))
            finally:
                await upstream.close()
            # The client's socket stays open across a worker replacement (a lost node, a crash):
            # only a worker that closed it on purpose (its task ended) ends the relay.
            if client.closed or ended_by == "client" or (ended_by == "upstream" and upstream.close_code in
                                                         DELIBERATE_CLOSE_CODES):
                break
            previous, endpoint = endpoint, await _next_worker(request, session_id, token, endpoint)
            if endpoint is None:
                await _send_error(client, "WORKER_NOT_READY", "the session's translation worker went away; retry",
                                  1013)
                return client
            log.info("control relay for %s follows its new worker", session_id)
            await client.send_json({"message_type": "warning", "data": {
                "code": "WORKER_REPLACED",
                "message": "the translation worker was replaced; the task goes on with a new one"}})
    except Exception as exc:
        if not kubernetes_unavailable(exc):
            raise
        await _send_error(client, "KUBERNETES_UNAVAILABLE", "the Kubernetes API is unreachable; retry shortly", 1013)
    finally:
        await client.close()
    return client
