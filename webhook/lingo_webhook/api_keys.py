"""API keys: a second credential of an ApiClient, for Palabra's current SDK (palabra-ai 2.x).

A key reads `lingo_<id>_<secret>`. The id (12 hex digits) names the key and, through the
ApiClient that lists it, its client: the facade finds the one stored hash to check without
trying every client's. Only `scrypt$<salt>$<hash>` of the whole key is stored, in the ApiClient's
`spec.apiKeys` beside a name; a key is revoked by marking it (`revoked: true`) or removing it, and
that takes effect at the facade's next registry refresh (a few seconds).

    python -m lingo_webhook.api_keys create CLIENT_ID [--name NAME] [--namespace NS]
    python -m lingo_webhook.api_keys revoke CLIENT_ID KEY_ID [--namespace NS]
    python -m lingo_webhook.api_keys list CLIENT_ID [--namespace NS]

`create` adds the key to the ApiClient (kubeconfig or in-cluster credentials) and prints it once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import sys
from dataclasses import dataclass, field

from lingo_api import resources as r

from .secret_hashes import hash_secret

PREFIX = "lingo_"
KEY_PATTERN = re.compile(r"^lingo_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$")
MAX_KEYS_PER_CLIENT = 20  # also the CRD's maxItems


@dataclass(frozen=True)
class NewKey:
    key_id: str
    key: str = field(repr=False)  # shown once, never stored (nor printed by a repr)

    def entry(self, name: str) -> dict:
        """What the ApiClient keeps of it."""
        return {"id": self.key_id, "name": name, "hash": hash_secret(self.key)}


def new_key() -> NewKey:
    key_id = secrets.token_hex(6)
    return NewKey(key_id, f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}")


def key_id_of(key: str) -> str | None:
    """The id of a well-formed key, else None (nothing else is read from untrusted input)."""
    match = KEY_PATTERN.fullmatch(key) if isinstance(key, str) and len(key) < 100 else None
    return match.group(1) if match else None


# -- the command line --------------------------------------------------------------------------

async def _api_client(custom, namespace: str, client_id: str) -> dict:
    listing = await custom.list_namespaced_custom_object(r.GROUP, r.VERSION, namespace, r.API_CLIENT_PLURAL)
    for item in listing.get("items", []):
        if (item.get("spec") or {}).get("clientId") == client_id:
            return item
    raise SystemExit(f"no ApiClient with clientId {client_id!r} in namespace {namespace!r}")


async def _change(args: argparse.Namespace) -> None:
    from kubernetes_asyncio import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        await config.load_kube_config()
    async with client.ApiClient() as api:
        custom = client.CustomObjectsApi(api)
        item = await _api_client(custom, args.namespace, args.client_id)
        keys = list(item["spec"].get("apiKeys") or [])
        if args.command == "list":
            for entry in keys:
                print(json.dumps({k: entry.get(k) for k in ("id", "name", "revoked")}))
            return
        if args.command == "create":
            if len(keys) >= MAX_KEYS_PER_CLIENT:
                raise SystemExit(f"{args.client_id} has {len(keys)} keys already; revoke and remove one first")
            made = new_key()
            keys.append(made.entry(args.name))
        else:
            if not any(entry.get("id") == args.key_id for entry in keys):
                raise SystemExit(f"{args.client_id} has no key {args.key_id!r}")
            keys = [{**entry, "revoked": True} if entry.get("id") == args.key_id else entry for entry in keys]
        item["spec"]["apiKeys"] = keys
        # A replace carries metadata.resourceVersion: a concurrent change fails it instead of being lost.
        await custom.replace_namespaced_custom_object(r.GROUP, r.VERSION, args.namespace, r.API_CLIENT_PLURAL,
                                                      item["metadata"]["name"], item)
        if args.command == "create":
            print(f"# API key {made.key_id} ({args.name}) for {args.client_id}, shown once:", file=sys.stderr)
            print(made.key)
        else:
            print(f"revoked {args.key_id} of {args.client_id}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lingo_webhook.api_keys", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("create", "revoke", "list"):
        command = sub.add_parser(name)
        command.add_argument("client_id")
        if name == "revoke":
            command.add_argument("key_id")
        if name == "create":
            command.add_argument("--name", default="default", help="what the key is for (shown in list)")
        command.add_argument("--namespace", required=True, help="the namespace of the ApiClients (the facade's)")
    asyncio.run(_change(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
