"""How client secrets and API keys are stored: `scrypt$<salt>$<hash>`, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

_SCRYPT = dict(n=2**14, r=8, p=1, dklen=32)


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def secret_matches(secret: str, stored: str) -> bool:
    try:
        scheme, salt_hex, digest_hex = stored.split("$")
        salt, expected = bytes.fromhex(salt_hex), bytes.fromhex(digest_hex)
    except ValueError:
        return False
    actual = hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)
    return scheme == "scrypt" and hmac.compare_digest(actual, expected)
