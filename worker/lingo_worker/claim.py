"""A pooled worker's claim: an idle worker (engines loaded, in no room) is given its session.

The operator claims an idle pod of a WorkerPool (operator/lingo_operator/worker_pool.py), then calls
`POST /claim` on the worker's control port with the session (its room, the worker's LiveKit token,
the session's client tokens and its languages) and, as a bearer token, a grant it signed for this
pod and this body (lingo_api/claim_grant.py): no one else can claim the worker, not even whoever
can read the pod or the namespace's Secrets.
The worker joins the room and answers once it is in, so the session's WorkerReady means
"joined" (a session without a room, `join_room` false, is answered at once). The same claim again (an operator that restarted mid-claim) gets the same answer; a
claim for another session is refused with 409: a worker serves one session for its life, and
nothing of one session reaches the next.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lingo_api import claim_grant
from lingo_api.session_spec import LANGUAGE_PATTERN, MAX_TARGET_LANGUAGES, check_target_languages
from lingo_api.untrusted import MAX_TOKEN_CHARS, UntrustedInputError, parse_json

log = logging.getLogger("lingo.worker")

JOIN_TIMEOUT_SECONDS = 10
MAX_CLAIM_BYTES = 512 * 1024  # 208 client tokens of a few hundred bytes each, with room to spare


class Claim(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session: str = Field(min_length=1, max_length=253)
    namespace: str = Field(min_length=1, max_length=63)
    room: str = Field(min_length=1, max_length=128)
    worker_token: str = Field(min_length=1, max_length=MAX_TOKEN_CHARS, repr=False)
    client_tokens: list[str] = Field(max_length=256, repr=False)
    source_language: str = Field(pattern=LANGUAGE_PATTERN)
    target_languages: list[str] = Field(max_length=MAX_TARGET_LANGUAGES)  # none: transcription only
    join_room: bool = True  # false: the session has no LiveKit room (audio over the control WebSocket)

    @field_validator("target_languages")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        return check_target_languages(value)


def _identity(claim: Claim) -> tuple[str, str, str]:
    return claim.namespace, claim.session, claim.room


def _error(status: int, code: str, desc: str) -> web.Response:
    return web.json_response({"ok": False, "error": {"code": code, "desc": desc}}, status=status)


class ClaimDesk:
    """Takes the one claim a pooled worker will ever accept; `claimed` is set when it has."""

    def __init__(self, claim_public_key: str, pod_uid: str, accept, joined: asyncio.Event):
        self._key = claim_grant.load_public_key(claim_public_key)
        self._pod_uid = pod_uid
        # accept(claim) -> awaitable: hand the session to the runtime (worker/lingo_worker/__main__.py);
        # `joined` is set by the runtime once it is in the room.
        self._accept = accept
        self.joined = joined
        self.claim: Claim | None = None
        self.claimed = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        grant = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not grant or len(grant) > MAX_TOKEN_CHARS:
            return _error(401, "UNAUTHORIZED", "a claim needs the operator's grant")
        if request.content_length is not None and request.content_length > MAX_CLAIM_BYTES:
            return _error(413, "PAYLOAD_TOO_LARGE", f"a claim is at most {MAX_CLAIM_BYTES} bytes")
        body = await request.content.read(MAX_CLAIM_BYTES + 1)
        try:
            claim_grant.verify(self._key, grant, self._pod_uid, body)
        except claim_grant.ClaimRefused as exc:
            return _error(401, "UNAUTHORIZED", str(exc))
        try:
            claim = Claim.model_validate(parse_json(body))
        except UntrustedInputError as exc:
            return _error(400, "VALIDATION_ERROR", str(exc))
        except ValidationError as exc:
            fields = sorted({".".join(str(p) for p in error["loc"]) for error in exc.errors()})
            return _error(400, "VALIDATION_ERROR", f"invalid claim fields: {', '.join(fields)}")
        if self.claim is None:
            self.claim = claim
            await self._accept(claim)
            self.claimed.set()
            log.info("claimed for session %s/%s (room %s)", claim.namespace, claim.session, claim.room)
        elif _identity(self.claim) != _identity(claim):
            return _error(409, "ALREADY_CLAIMED", "this worker serves another session")
        try:
            await asyncio.wait_for(self.joined.wait(), JOIN_TIMEOUT_SECONDS)
        except TimeoutError:
            return _error(504, "JOIN_TIMEOUT", f"not in the room after {JOIN_TIMEOUT_SECONDS}s; still trying")
        return web.json_response({"ok": True, "data": {"joined": True}})
