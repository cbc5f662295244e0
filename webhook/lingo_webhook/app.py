"""aiohttp application of the REST facade."""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from kubernetes_asyncio.client import CoordinationV1Api, CoreV1Api, CustomObjectsApi, VersionApi
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lingo_api.languages import matrix as language_matrix
from lingo_api.session_spec import SessionSpec
from lingo_api.untrusted import CLIENT_ID_PATTERN, SECRET_PATTERN, UntrustedInputError, is_session_id, parse_json

from . import metrics
from .client_address import peer_of
from .clients import Client, ClientRegistry
from .console_site import add_console_routes
from .control_proxy import IssuedTokens, proxy_control
from .errors import ApiError, json_errors, ok_response
from .openapi import openapi_document
from .palabra_stream import SPEECH_TO_SPEECH_PATH, SPEECH_TO_TEXT_PATH, TEXT_TO_SPEECH_PATH, stream_handler
from .quota_lock import ClientQuotaLock
from .session_cache import SessionCache
from .session_store import SessionStore, describe
from .settings import FacadeConfig

log = logging.getLogger("lingo.webhook")

MAX_BODY_BYTES = 16 * 1024
BASE = "/session-storage"


class CreateSessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: SessionSpec


class PalabraSessionSpec(SessionSpec):
    """Palabra's create body (`POST /session-storage/session`): one publisher by default, and
    two fields of Palabra's that change nothing here."""

    intent: str | None = Field(None, max_length=64)
    publisher_can_subscribe: bool | None = None  # publishers can always subscribe here

    def to_spec(self) -> SessionSpec:
        return SessionSpec.model_validate(self.model_dump(exclude={"intent", "publisher_can_subscribe"}))


class PalabraCreateSessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: PalabraSessionSpec


class AccessLogger(AbstractAccessLogger):
    """Method, path without the query string (control URLs may carry a token), status, time."""

    def log(self, request, response, duration):
        self.logger.info("%s %s %s %.1fms", request.method, request.path, response.status, duration * 1000)


async def authenticate(request: web.Request) -> Client:
    """The client of a request: ClientID/ClientSecret headers, or an API key as
    `Authorization: Bearer lingo_…` (webhook/lingo_webhook/api_keys.py)."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and key:
        client = await request.app["clients"].authenticate_key(key.strip(), peer_of(request))
        if client is None:
            raise ApiError(401, "unauthorized", "unknown or revoked API key")
        return client
    client_id, secret = request.headers.get("ClientID"), request.headers.get("ClientSecret")
    if not client_id or not secret:
        raise ApiError(401, "unauthorized", "ClientID and ClientSecret headers (or an API key) are required")
    # A value no registered client can have (bad bytes, control characters, absurd length) is
    # refused before it reaches scrypt, the cache key or a log line.
    if not CLIENT_ID_PATTERN.fullmatch(client_id) or not SECRET_PATTERN.fullmatch(secret):
        raise ApiError(401, "unauthorized", "unknown client or wrong secret")
    client = await request.app["clients"].authenticate(client_id, secret, peer_of(request))
    if client is None:
        raise ApiError(401, "unauthorized", "unknown client or wrong secret")
    return client


def session_id_of(request: web.Request) -> str:
    """The {id} path segment, checked against the name pattern before it reaches Kubernetes."""
    session_id = request.match_info["id"]
    if not is_session_id(session_id):
        raise ApiError(404, "session_not_found", "no such session")
    return session_id


async def parse_create_body(request: web.Request, model: type[BaseModel] = CreateSessionRequest) -> SessionSpec:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", f"body exceeds {MAX_BODY_BYTES} bytes")
    raw = await request.read()
    try:
        payload = parse_json(raw or b"null")
    except UntrustedInputError as exc:
        raise ApiError(422, "invalid_json", f"body is {exc}") from None
    if not isinstance(payload, dict):
        raise ApiError(422, "invalid_body", 'body must be a JSON object like {"data": {"publisher_count": 1}}')
    try:
        data = model.model_validate(payload).data
    except ValidationError as exc:
        details = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        raise ApiError(422, "validation_error", "request body is invalid", details) from None
    return data.to_spec() if isinstance(data, PalabraSessionSpec) else data


async def create_session(request: web.Request) -> web.Response:
    client = await authenticate(request)
    summary, tokens = await request.app["store"].create_for(client, await parse_create_body(request))
    return ok_response({
        "session_id": summary["session_id"],
        "publisher": tokens["publisher"],
        "subscriber": tokens["subscriber"],
        "room_name": summary["room_name"],
        "stream_url": summary["stream_url"],
        "control_url": summary["control_url"],
        "expires_at": summary["expires_at"],
        "worker_ready": summary["worker_ready"],
    })


async def create_palabra_session(request: web.Request) -> web.Response:
    """Palabra's create route, answered in Palabra's shape (its SDK reads `id`, `publisher` as
    one token, `webrtc_url`, `ws_url`). Wrong credentials are a 404 here, as on Palabra's own
    API, so its SDK reports "Invalid API credentials"; the project's own routes answer 401."""
    try:
        client = await authenticate(request)
    except ApiError as exc:
        if exc.status != 401:
            raise
        raise ApiError(404, "invalid_credentials", exc.message) from None
    summary, tokens = await request.app["store"].create_for(client, await parse_create_body(request, PalabraCreateSessionRequest))
    return ok_response({
        "id": summary["session_id"],
        "publisher": tokens["publisher"][0],
        "subscriber": tokens["subscriber"],
        "webrtc_room_name": summary["room_name"],
        "webrtc_url": summary["stream_url"],
        "ws_url": summary["control_url"],
        "expires_at": summary["expires_at"],
    })


async def list_sessions(request: web.Request) -> web.Response:
    client = await authenticate(request)
    return ok_response([describe(s) for s in await request.app["store"].list_for(client.client_id)])


async def get_session(request: web.Request) -> web.Response:
    client = await authenticate(request)
    return ok_response(describe(await request.app["store"].get_owned(client.client_id, session_id_of(request))))


async def session_tokens(request: web.Request) -> web.Response:
    """The tokens of one of the client's sessions (for the console to join a session it did not
    create in this page); the same the create answered with."""
    client = await authenticate(request)
    session = await request.app["store"].get_owned(client.client_id, session_id_of(request))
    return ok_response(await request.app["store"].read_tokens(session["metadata"]["name"]))


async def delete_session(request: web.Request) -> web.Response:
    client = await authenticate(request)
    session = await request.app["store"].get_owned(client.client_id, session_id_of(request))
    await request.app["store"].delete(session["metadata"]["name"])
    return ok_response({"session_id": session["metadata"]["name"], "deleted": True})


async def control(request: web.Request) -> web.StreamResponse:
    return await proxy_control(request, session_id_of(request))


async def languages(_: web.Request) -> web.Response:
    """The pairs a CPU session can translate: {"pairs": [{"source", "target", "route", "pivot"}],
    plus what each stage knows (asr, mt, tts)}. No credentials needed: it is what the product offers."""
    return ok_response(language_matrix())


async def healthz(_: web.Request) -> web.Response:
    return ok_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    if request.app["draining"]:
        raise ApiError(503, "draining", "this replica is shutting down")
    if not request.app["store"].cache.synced:
        raise ApiError(503, "not_ready", "the session cache has not synced yet")
    try:
        await VersionApi(request.app["k8s"]).get_code(_request_timeout=3)
    except Exception:
        raise ApiError(503, "not_ready", "the Kubernetes API is not reachable") from None
    return ok_response({"status": "ready"})


async def openapi(_: web.Request) -> web.Response:
    return web.json_response(openapi_document(CreateSessionRequest, PalabraCreateSessionRequest))


def build_app(k8s_client, config: FacadeConfig) -> web.Application:
    # json_errors sits inside record, so metrics see the final status of every request.
    app = web.Application(middlewares=[metrics.record, json_errors], client_max_size=MAX_BODY_BYTES)
    custom, core = CustomObjectsApi(k8s_client), CoreV1Api(k8s_client)
    app["k8s"] = k8s_client
    app["config"] = config
    app["clients"] = ClientRegistry(custom, config.clients_namespace)
    cache = SessionCache(custom, config.namespace)
    quota_lock = ClientQuotaLock(CoordinationV1Api(k8s_client), config.namespace, config.replica)
    app["store"] = SessionStore(custom, core, cache, config.ready_timeout_seconds, quota_lock)
    app["draining"] = False  # set on SIGTERM (__main__.py): readiness fails, requests are still served
    app["issued_tokens"] = IssuedTokens()

    async def background(app: web.Application):
        cache.start()
        app["http"] = aiohttp.ClientSession()  # upstream connections of the control relay
        yield
        await app["http"].close()
        await cache.stop()

    app.cleanup_ctx.append(background)
    app.router.add_post(f"{BASE}/sessions", create_session)
    app.router.add_post(f"{BASE}/session", create_palabra_session)
    app.router.add_get(f"{BASE}/sessions", list_sessions)
    app.router.add_get(f"{BASE}/sessions/{{id}}", get_session)
    app.router.add_delete(f"{BASE}/sessions/{{id}}", delete_session)
    app.router.add_get(f"{BASE}/sessions/{{id}}/tokens", session_tokens)
    app.router.add_get(f"{BASE}/sessions/{{id}}/control", control)
    app.router.add_get(f"{BASE}/languages", languages)
    app.router.add_get(f"{BASE}/openapi.json", openapi)
    # Palabra 2.x's streams, with an API key (webhook/lingo_webhook/palabra_stream.py)
    app.router.add_get(SPEECH_TO_SPEECH_PATH, stream_handler("stream"))
    app.router.add_get(SPEECH_TO_TEXT_PATH, stream_handler("stt"))
    app.router.add_get(TEXT_TO_SPEECH_PATH, stream_handler("tts"))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    add_console_routes(app, config.livekit_public_url)
    return app
