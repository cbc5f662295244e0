"""The per-session Secret holding every token minted for the session (and the worker's own)."""

from __future__ import annotations

import base64
import datetime as dt
import json

from lingo_api import resources as r
from lingo_api.session_spec import SessionSpec
from lingo_api.session_tokens import Role, mint_token, new_identity

from .config import OperatorConfig
from .ownership import owner_reference, session_labels


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def tokens_secret_manifest(
    session: dict, spec: SessionSpec, config: OperatorConfig, room: str, expires_at: dt.datetime
) -> dict:
    name = session["metadata"]["name"]
    secret = config.livekit_api_secret.get_secret_value()

    def mint(role: Role, index: int) -> str:
        return mint_token(
            api_key=config.livekit_api_key, api_secret=secret, room=room, role=role,
            identity=new_identity(role, index), session=name, namespace=session["metadata"]["namespace"],
            expires_at=expires_at,
        )

    data = {
        r.SECRET_PUBLISHER_TOKENS: json.dumps([mint(Role.PUBLISHER, i) for i in range(spec.publisher_count)]),
        r.SECRET_SUBSCRIBER_TOKENS: json.dumps([mint(Role.SUBSCRIBER, i) for i in range(spec.subscriber_count)]),
        r.SECRET_WORKER_TOKEN: mint(Role.WORKER, 0),
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": r.tokens_secret_name(name),
            "namespace": session["metadata"]["namespace"],
            "labels": session_labels(session, "session-tokens"),
            "ownerReferences": [owner_reference(session)],
        },
        "data": {key: _b64(value) for key, value in data.items()},
    }
