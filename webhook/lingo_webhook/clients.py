"""Registered API clients (ApiClient resources) and how their secrets are checked.

Secrets and API keys (webhook/lingo_webhook/api_keys.py) are stored only as
`scrypt$<salt>$<hash>`. Every check, including one for an unknown client ID or key, runs the
same scrypt and a constant-time comparison, so timing does not reveal which ones exist.

`python -m lingo_webhook.clients manifest CLIENT_ID [--max-sessions N]` prints an ApiClient
manifest with a fresh random secret (shown once on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import logging
import secrets
import sys
import time
from dataclasses import dataclass

import yaml
from kubernetes_asyncio.client import CustomObjectsApi

from lingo_api import resources as r
from lingo_api.failure_text import describe_failure

from .api_keys import key_id_of
from .errors import API_TIMEOUT_SECONDS, KUBERNETES_UNAVAILABLE, kubernetes_unavailable
from .login_throttle import LoginThrottle
from .secret_hashes import hash_secret, secret_matches

log = logging.getLogger("lingo.webhook")

# Compared against when the client ID is unknown, so both paths cost the same.
_DECOY_HASH = hash_secret(secrets.token_urlsafe(16))


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("API clients not refreshed: %s", describe_failure(task.exception()))


@dataclass(frozen=True)
class Client:
    client_id: str
    secret_hash: str
    max_sessions: int
    disabled: bool


@dataclass(frozen=True)
class StoredKey:
    """One of an ApiClient's API keys (webhook/lingo_webhook/api_keys.py), as the registry holds it."""

    client: Client
    key_hash: str
    revoked: bool


class ClientRegistry:
    """ApiClient resources of one namespace, re-read at most every `ttl` seconds.

    A verified (client, secret) pair is remembered for `verified_ttl` seconds as an HMAC under
    a per-process key (never the secret itself), so scrypt runs once per client and minute
    rather than on every request. Changing or disabling the ApiClient takes effect at the
    next registry refresh, because the remembered entry is bound to the stored hash.

    While the API server is unreachable the last registry read keeps serving (a facade that
    never read it answers 503); scrypt work is bounded by a LoginThrottle.
    """

    def __init__(self, custom: CustomObjectsApi, namespace: str, ttl: float = 5.0, verified_ttl: float = 60.0,
                 throttle: LoginThrottle | None = None):
        self._custom, self._namespace, self._ttl = custom, namespace, ttl
        self.throttle = throttle or LoginThrottle()
        self._clients: dict[str, Client] = {}
        self._keys: dict[str, StoredKey] = {}  # by key id
        self._loaded_at = -1e9
        self._refreshing: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self._verified_ttl = verified_ttl
        self._verified: dict[bytes, tuple[str, float]] = {}  # hmac(id, secret) -> (stored hash, until)
        self._cache_key = secrets.token_bytes(32)

    async def _refresh(self) -> None:
        """The registry as of at most `ttl` ago. Only a facade that never read it waits for the
        read; otherwise a due refresh runs beside the request, which uses the last list: a stalled
        API server (etcd down) must not hold every login for the read's timeout."""
        if time.monotonic() - self._loaded_at < self._ttl:
            return
        if self._loaded_at < 0:
            await self._load()
        elif self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._load(), name="api-clients-refresh")
            self._refreshing.add_done_callback(_log_failure)

    async def _load(self) -> None:
        async with self._lock:
            if time.monotonic() - self._loaded_at < self._ttl:
                return
            try:
                listing = await self._custom.list_namespaced_custom_object(
                    r.GROUP, r.VERSION, self._namespace, r.API_CLIENT_PLURAL, _request_timeout=API_TIMEOUT_SECONDS
                )
            except Exception as exc:
                if not kubernetes_unavailable(exc):
                    raise
                if not self._clients and self._loaded_at < 0:
                    raise KUBERNETES_UNAVAILABLE from exc
                log.warning("API clients not refreshed (%s); using the last list", describe_failure(exc))
                self._loaded_at = time.monotonic() - self._ttl + 1  # try again in a second
                return
            clients, keys = {}, {}
            for item in listing.get("items", []):
                spec = item.get("spec") or {}
                if "clientId" in spec and "secretHash" in spec:
                    client = clients[spec["clientId"]] = Client(
                        spec["clientId"], spec["secretHash"], int(spec.get("maxConcurrentSessions", 10)),
                        bool(spec.get("disabled", False)),
                    )
                    for entry in spec.get("apiKeys") or []:
                        if isinstance(entry, dict) and "id" in entry and "hash" in entry:
                            keys[entry["id"]] = StoredKey(client, entry["hash"], bool(entry.get("revoked", False)))
            self._clients, self._keys, self._loaded_at = clients, keys, time.monotonic()

    async def authenticate(self, client_id: str, secret: str, peer: str = "") -> Client | None:
        await self._refresh()
        client = self._clients.get(client_id)
        return await self._check(client, client.secret_hash if client else None, client_id, secret, peer)

    async def authenticate_key(self, key: str, peer: str = "") -> Client | None:
        """The client an API key belongs to; None for a malformed, unknown or revoked key."""
        await self._refresh()
        key_id = key_id_of(key)
        stored = self._keys.get(key_id) if key_id else None
        if stored is not None and stored.revoked:
            stored = None
        return await self._check(stored.client if stored else None, stored.key_hash if stored else None,
                                 f"key:{key_id or '-'}", key, peer)

    async def _check(self, client: Client | None, stored_hash: str | None, who: str, secret: str,
                     peer: str) -> Client | None:
        """`secret` against `stored_hash` (a decoy when there is none: the same cost either way)."""
        fingerprint = hmac.new(self._cache_key, f"{who}\0{secret}".encode(), hashlib.sha256).digest()
        remembered = self._verified.get(fingerprint)
        now = time.monotonic()
        if client and remembered and remembered[0] == stored_hash and remembered[1] > now:
            return None if client.disabled else client
        self.throttle.check_peer(peer, who)
        async with self.throttle.slot(who, peer):
            # scrypt is CPU-bound (~40 ms); keep the event loop free for other requests.
            matches = await asyncio.to_thread(secret_matches, secret, stored_hash or _DECOY_HASH)
        if client is None or client.disabled or not matches:
            self.throttle.failed(peer, who)
            return None
        self.throttle.succeeded(peer, who)
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[fingerprint] = (stored_hash, now + self._verified_ttl)
        return client


def api_client_manifest(client_id: str, secret_hash: str, max_sessions: int, namespace: str | None) -> dict:
    metadata: dict = {"name": client_id.lower().replace("_", "-").replace(".", "-")}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": r.API_VERSION,
        "kind": r.API_CLIENT_KIND,
        "metadata": metadata,
        "spec": {"clientId": client_id, "secretHash": secret_hash, "maxConcurrentSessions": max_sessions},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lingo_webhook.clients")
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("manifest", help="print an ApiClient manifest with a new secret")
    make.add_argument("client_id")
    make.add_argument("--max-sessions", type=int, default=10)
    make.add_argument("--namespace", default=None)
    make.add_argument("--secret", default=None, help="use this secret instead of a random one")
    args = parser.parse_args(argv)
    secret = args.secret or secrets.token_urlsafe(32)
    print(yaml.safe_dump(api_client_manifest(args.client_id, hash_secret(secret), args.max_sessions, args.namespace)))
    if not args.secret:
        print(f"# ClientSecret for {args.client_id} (shown once): {secret}", file=sys.stderr)


if __name__ == "__main__":
    main()
