"""Signed claims: only the operator can hand a pooled worker a session.

The operator keeps an Ed25519 key in a Secret of its own namespace
(operator/lingo_operator/claim_signing.py); pooled workers are given the public half only, in
their pod's environment (worker_env.CLAIM_PUBLIC_KEY). Each claim the operator sends carries a
grant: a JWT signed with that key naming the one pod it is for (by uid), the SHA-256 of the
claim's body and a deadline a minute away. So nothing a reader of the sessions namespace can see
(pods, Secrets) lets anyone claim a worker, and a grant seen on the wire serves no other pod, no
other body and nothing after its minute (issue 24, finding 8).
"""

from __future__ import annotations

import base64
import hashlib
import time

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALGORITHM = "EdDSA"
GRANT_SECONDS = 60
LEEWAY_SECONDS = 10  # clocks of the operator's and the worker's nodes may differ a little


class ClaimRefused(Exception):
    """A grant that does not let this claim through; the message says why (no secrets in it)."""


def public_key_text(key: Ed25519PrivateKey) -> str:
    """The public half as the pod's environment carries it: 32 raw bytes, base64url."""
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def load_public_key(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise ValueError("the claim public key is not 32 bytes of base64url") from exc


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def sign(key: Ed25519PrivateKey, pod_uid: str, body: bytes, now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    return jwt.encode({"sub": pod_uid, "body": _digest(body), "iat": issued, "exp": issued + GRANT_SECONDS},
                      key, algorithm=ALGORITHM)


def verify(key: Ed25519PublicKey, grant: str, pod_uid: str, body: bytes) -> None:
    """Raises ClaimRefused unless `grant` was signed by the operator for this pod and this body."""
    try:
        claims = jwt.decode(grant, key, algorithms=[ALGORITHM], leeway=LEEWAY_SECONDS,
                            options={"require": ["sub", "body", "exp"]})
    except jwt.ExpiredSignatureError as exc:
        raise ClaimRefused("the claim's grant has expired") from exc
    except jwt.InvalidTokenError as exc:
        raise ClaimRefused("the claim is not signed by this pool's operator") from exc
    if claims["sub"] != pod_uid:
        raise ClaimRefused("the claim's grant is for another worker")
    if claims["body"] != _digest(body):
        raise ClaimRefused("the claim's body is not the one its grant was signed for")
