"""Session JWTs: a LiveKit room grant plus a `lingo` claim carrying control-API permissions.

Publishers may publish audio and read/edit/write the translation task; subscribers may only
receive audio and read/edit the task. The worker joins with its own agent token.
"""

from __future__ import annotations

import calendar
import datetime as dt
import secrets
from dataclasses import dataclass
from enum import Enum

import jwt
from livekit import api as livekit_api

CONTROL_CLAIM = "lingo"
# Palabra's SDK waits for a participant whose identity starts with this before it starts.
TRANSLATOR_IDENTITY_PREFIX = "palabra_translator_"


class Role(str, Enum):
    PUBLISHER = "publisher"
    SUBSCRIBER = "subscriber"
    WORKER = "worker"


class Permission(str, Enum):
    READ = "read"  # get the task, receive transcription/translation events
    EDIT = "edit"  # change engine options of the running task (voice, VAD thresholds)
    WRITE = "write"  # set languages, pause, resume and end the task


ROLE_PERMISSIONS: dict[Role, tuple[Permission, ...]] = {
    Role.PUBLISHER: (Permission.READ, Permission.EDIT, Permission.WRITE),
    Role.SUBSCRIBER: (Permission.READ, Permission.EDIT),
    Role.WORKER: (Permission.READ, Permission.EDIT, Permission.WRITE),
}


def _video_grants(role: Role, room: str) -> livekit_api.VideoGrants:
    if role is Role.PUBLISHER:
        return livekit_api.VideoGrants(
            room_join=True, room=room, can_publish=True, can_subscribe=True,
            can_publish_data=True, can_publish_sources=["microphone"],
        )
    if role is Role.SUBSCRIBER:
        # Data packets carry control messages to the worker, which enforces the subscriber's
        # (read, edit) permissions itself.
        return livekit_api.VideoGrants(
            room_join=True, room=room, can_publish=False, can_subscribe=True, can_publish_data=True
        )
    # The worker is an agent-kind participant, not a hidden one: hidden participants' tracks
    # are hidden too, and the translated tracks must reach the subscribers.
    return livekit_api.VideoGrants(
        room_join=True, room=room, can_publish=True, can_subscribe=True, can_publish_data=True, agent=True,
    )


def new_identity(role: Role, index: int) -> str:
    if role is Role.WORKER:
        return f"{TRANSLATOR_IDENTITY_PREFIX}{secrets.token_hex(4)}"
    return f"{role.value}-{index}-{secrets.token_hex(4)}"


def mint_token(
    *, api_key: str, api_secret: str, room: str, role: Role, identity: str, session: str, namespace: str,
    expires_at: dt.datetime,
) -> str:
    """A LiveKit-compatible JWT (HS256 with the LiveKit API secret) valid until `expires_at`."""
    token = livekit_api.AccessToken(api_key, api_secret).with_identity(identity).with_name(identity)
    token = token.with_grants(_video_grants(role, room))
    if role is Role.WORKER:
        token = token.with_kind("agent")
    claims = token.claims.asdict()
    now = dt.datetime.now(dt.timezone.utc)
    claims.update(
        sub=identity,
        iss=api_key,
        nbf=calendar.timegm(now.utctimetuple()) - 5,  # tolerate small clock skew
        exp=calendar.timegm(expires_at.utctimetuple()),
        # `namespace` and `session` only route a control connection; the token is then checked
        # byte for byte against the ones issued for that session.
        **{CONTROL_CLAIM: {"session": session, "namespace": namespace, "role": role.value,
                           "permissions": [p.value for p in ROLE_PERMISSIONS[role]]}},
    )
    return jwt.encode(claims, api_secret, algorithm="HS256")


@dataclass(frozen=True)
class ControlGrant:
    identity: str
    room: str
    session: str
    namespace: str
    role: Role
    permissions: frozenset[Permission]
    expires_at: int

    def allows(self, permission: Permission) -> bool:
        return permission in self.permissions


class InvalidToken(ValueError):
    pass


def read_control_grant(token: str) -> ControlGrant:
    """Parse the claims of a token whose authenticity the caller has already established.

    The worker never holds the LiveKit API secret: it accepts only tokens byte-identical to the
    ones the operator issued for its session, so the signature was checked at minting time.
    Expiry is still enforced here.
    """
    try:
        claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": True, "verify_nbf": False})
        control = claims[CONTROL_CLAIM]
        return ControlGrant(
            identity=claims["sub"],
            room=claims["video"]["room"],
            session=control["session"],
            namespace=control.get("namespace", ""),
            role=Role(control["role"]),
            permissions=frozenset(Permission(p) for p in control["permissions"]),
            expires_at=int(claims["exp"]),
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("token expired") from exc
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError) as exc:
        raise InvalidToken("token is not a session token") from exc
